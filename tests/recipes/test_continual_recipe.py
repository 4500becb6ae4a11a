"""tunelab continual: stages on the tiny BERT; EWC and LwF terms against hand computations; the matrix; resume."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import write_sentiment
from tests.tasks.test_multitask import write_genres
from tunelab import cli
from tunelab.errors import ConfigError
from tunelab.recipes import continual, continual_stage
from tunelab.training.callbacks import Callback
from tunelab.training.continual import backward_transfer, forgetting
from tunelab.training.objective import Objective


def _config(tmp: Path, model: Path, strategy: str = "naive", **more) -> Path:
    a = write_sentiment(tmp / "a.tsv", n=48), write_sentiment(tmp / "a_dev.tsv", n=16, seed=1)
    b = write_genres(tmp / "b.tsv", n=48), write_genres(tmp / "b_dev.tsv", n=12, seed=1)
    cfg = {
        "model": {"name": str(model), "max_length": 16, "dropout": 0},
        "data": {"text_column": "sentence"},
        "train": {"max_steps": 10, "batch_size": 8, "lr": 1e-2, "precision": "fp32", "threads": 1, "save_every": 1},
        "speed": {"cache": False},
        "output_dir": str(tmp / "cl"),
        "continual": {
            "strategy": strategy,
            "stages": [
                {"name": "sent", "data": {"train": str(a[0]), "dev": str(a[1])}},
                {"name": "genre", "data": {"train": str(b[0]), "dev": str(b[1])}},
            ],
            **more,
        },
    }
    path = tmp / "continual.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


class DieInSecondStage(Callback):
    def __init__(self):
        self.stages = 0

    def on_train_begin(self, ctx):
        self.stages += 1

    def on_step_begin(self, ctx):
        if self.stages == 2 and ctx.state.step == 2:
            raise KeyboardInterrupt


def test_two_stages_matrix_forgetting_and_resume(tmp_path, tiny_bert_dir):
    (tmp_path / "a").mkdir()
    straight = continual.run(str(_config(tmp_path / "a", tiny_bert_dir)), [], quiet=True, log=lambda m: None)
    out = tmp_path / "a" / "cl"
    m = straight["matrix"]
    first = json.loads((out / "00-sent" / "metrics.json").read_text())["dev"]["tasks"]
    second = json.loads((out / "01-genre" / "metrics.json").read_text())["dev"]["tasks"]
    assert m == [[first["sent"]["accuracy"], None], [second["sent"]["accuracy"], second["genre"]["accuracy"]]]
    assert straight["average_forgetting"] == pytest.approx(m[0][0] - m[1][0]) == forgetting(m)
    assert straight["backward_transfer"] == pytest.approx(m[1][0] - m[0][0]) == backward_transfer(m)
    assert (out / "report.md").is_file() and (out / continual.PLOT).is_file()
    assert json.loads((out / continual.RESULTS).read_text())["matrix"] == m
    # stage 1 started from stage 0's weights: the shared encoder and the first head (every tensor but the new head)
    assert json.loads((out / "01-genre" / "metrics.json").read_text())["continual"]["initialised_tensors"] > 10
    # interrupted in the second stage, then resumed: the same matrix; the first stage is not trained again
    (tmp_path / "b").mkdir()
    path = str(_config(tmp_path / "b", tiny_bert_dir))
    with pytest.raises(KeyboardInterrupt):
        continual.run(path, [], quiet=True, log=lambda m: None, callbacks=(DieInSecondStage(),))
    done = (tmp_path / "b" / "cl" / "00-sent" / "metrics.json").stat().st_mtime_ns
    resumed = continual.run(path, [], quiet=True, log=lambda m: None)
    assert (tmp_path / "b" / "cl" / "00-sent" / "metrics.json").stat().st_mtime_ns == done
    flat = [v for row in m for v in row if v is not None]
    assert [v for row in resumed["matrix"] for v in row if v is not None] == pytest.approx(flat, abs=1e-6)


def test_replay_mixes_k_examples_of_each_earlier_stage(tmp_path, tiny_bert_dir, capsys):
    path = _config(tmp_path, tiny_bert_dir, "replay", replay_k=5)
    assert cli.main(["continual", "--quiet", str(path), "train.max_steps=2"]) == 0
    notes = json.loads((tmp_path / "cl" / "01-genre" / "metrics.json").read_text())["continual"]
    assert notes["training_examples"] == {"sent": 5, "genre": 48}
    assert "average forgetting" in capsys.readouterr().err
    assert continual_stage.reservoir(list(range(100)), 5, 3) == continual_stage.reservoir(list(range(100)), 5, 3)
    assert len(set(continual_stage.reservoir(list(range(100)), 5, 3))) == 5


def _linear_setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1, bias=False)
    base = Objective(
        lambda m, b: m(b["x"]).squeeze(-1), lambda out, b: (((out - b["y"]) ** 2).sum(), len(b["y"])), lambda b: 2
    )
    feats = [{"x": torch.randn(3), "y": torch.randn(())} for _ in range(4)]
    collate = lambda fs: {"x": torch.stack([f["x"] for f in fs]), "y": torch.stack([f["y"] for f in fs])}  # noqa: E731
    setup = SimpleNamespace(
        model=model,
        cfg=SimpleNamespace(train=SimpleNamespace(batch_size=2)),
        prepared=SimpleNamespace(collate=collate),
        log=lambda m: None,
    )
    return model, base, feats, collate, setup


def test_ewc_adds_the_penalty_computed_by_hand():
    model, base, feats, collate, setup = _linear_setup()
    anchor = model.weight.detach().clone()

    # F by hand: per earlier task, the mean over its examples of (d loss_example / d w)^2 with loss_example =
    # (w.x - y)^2, so d/dw = 2 (w.x - y) x; the two tasks' Fishers add up
    def by_hand(examples):
        return sum((2 * (f["x"] @ anchor[0] - f["y"]) * f["x"]) ** 2 for f in examples) / len(examples)

    fisher = by_hand(feats[:3]) + by_hand(feats[3:])
    # the gradient of a whole batch's mean loss, squared, would be another (smaller) number: per-example it is
    mean_grad = sum(2 * (f["x"] @ anchor[0] - f["y"]) * f["x"] for f in feats[:3]) / 3
    assert not torch.allclose(fisher, mean_grad**2 + by_hand(feats[3:]))
    older = {"a": feats[:3], "b": feats[3:]}
    objective = continual_stage.with_ewc(base, setup, older, SimpleNamespace(ewc_lambda=10.0))
    with torch.no_grad():
        model.weight += 0.5  # move away from the anchor
    batch = collate(feats[:2])
    total, n = objective.loss(objective.forward(model, batch), batch)
    plain, _ = base.loss(base.forward(model, batch), batch)
    penalty = 0.5 * 10.0 * (fisher * (model.weight.detach() - anchor) ** 2).sum()
    assert n == 2 and float(total) == pytest.approx(float(plain + n * penalty), rel=1e-5)


class Heads(torch.nn.Module):
    """A stand-in multitask model: task a gives (batch, 2) logits, task b (batch, seq, 3)."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b = torch.nn.Linear(4, 2), torch.nn.Linear(4, 3)

    def forward(self, task, input_ids, attention_mask=None):
        x = torch.nn.functional.one_hot(input_ids, 4).float()  # (batch, seq, 4)
        logits = self.a(x.mean(1)) if task == "a" else self.b(x)
        return SimpleNamespace(logits=logits)


def test_lwf_adds_the_distillation_of_every_earlier_head_by_hand():
    student, teacher = Heads(0), Heads(1)
    base = Objective(lambda m, b: torch.tensor(0.0), lambda o, b: (torch.tensor(1.5), 2), lambda b: 2)
    cc = SimpleNamespace(lwf_weight=0.7, lwf_temperature=2.0)
    objective = continual_stage.with_lwf(base, teacher, ["a", "b"], "c", cc)
    batch = {
        "task": "c",
        "input_ids": torch.tensor([[1, 2, 3], [0, 1, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
    }
    total, n = objective.loss(objective.forward(student, batch), batch)

    def kl(s, t):  # KL(softmax(t/T) || softmax(s/T)) per item
        p, log_p, log_q = (t / 2).softmax(-1), (t / 2).log_softmax(-1), (s / 2).log_softmax(-1)
        return (p * (log_p - log_q)).sum(-1)

    with torch.no_grad():
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        ka = kl(student("a", ids).logits, teacher("a", ids).logits).mean()
        kb = kl(student("b", ids).logits[mask], teacher("b", ids).logits[mask]).mean()  # attended tokens only
    assert n == 2 and float(total) == pytest.approx(1.5 + 0.7 * 4 * (float(ka) + float(kb)) * 2, rel=1e-5)
    replayed = {**batch, "task": "a"}  # a replayed batch of an earlier task: no distillation term
    assert float(objective.loss(objective.forward(student, replayed), replayed)[0]) == 1.5


def test_bad_continual_configs(tmp_path, tiny_bert_dir):
    path = _config(tmp_path, tiny_bert_dir)
    with pytest.raises(ConfigError, match="continual.strategy"):
        continual.load(str(path), ["continual.strategy=forget"])
    with pytest.raises(ConfigError, match="continual.replay_kk: unknown key; did you mean continual.replay_k"):
        continual.load(str(path), ["continual.replay_kk=3"])
    with pytest.raises(ConfigError, match="adapters trains method weights per stage"):
        continual.load(str(path), ["continual.strategy=adapters"])
    with pytest.raises(ConfigError, match="the stages give the tasks"):
        continual.load(str(path), ["task=classification"])
    with pytest.raises(ConfigError, match=r"continual.stages: List should have at least 2"):
        continual.load(str(path), ["continual.stages=[{name: a, data: {train: x}}]"])


@pytest.mark.parametrize("strategy", ["ewc", "lwf", "adapters"])
def test_each_strategy_runs_through_the_stages(strategy, tmp_path, tiny_bert_dir):
    path = str(_config(tmp_path, tiny_bert_dir, strategy))
    result = continual.run(path, ["method=lora", "train.max_steps=3"], quiet=True, log=lambda m: None)
    m = result["matrix"]
    assert len(m) == 2 and m[1][0] is not None and m[1][1] is not None
    if strategy == "adapters":  # every stage its own adapter and head on the frozen base: nothing to forget
        assert m[1][0] == m[0][0] and result["average_forgetting"] == 0.0
        assert json.loads((tmp_path / "cl" / "01-genre" / "labels.json").read_text())[0].startswith("genre:")


def test_train_points_a_continual_config_to_its_command(tmp_path, tiny_bert_dir):
    from tunelab import config

    with pytest.raises(ConfigError, match="the continual: section is read by `tunelab continual CONFIG`"):
        config.load(_config(tmp_path, tiny_bert_dir))
