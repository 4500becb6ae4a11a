"""Method-specific behaviour behind the generic hooks: AdaLoRA's rank pruning, LoRA+ groups, adapter/prompt errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import write_sentiment
from tunelab import config
from tunelab.errors import ConfigError
from tunelab.methods import adalora, adapter, loraplus, prompt_tuning
from tunelab.methods.bottleneck import AdaptedLayer
from tunelab.models import load as model_load
from tunelab.recipes import finetune
from tunelab.training.callbacks import Callback


def run_cfg(tmp_path: Path, model_dir: Path, *extra: str):
    data = write_sentiment(tmp_path / "train.tsv", n=96)
    return config.load(
        None,
        [
            f"model.name={model_dir}",
            f"data.train={data}",
            "data.text_column=sentence",
            f"output_dir={tmp_path / 'run'}",
            "train.batch_size=8",
            "train.lr=1e-2",
            "train.log_every=1",
            "train.precision=fp32",
            *extra,
        ],
    )


def bert(tiny_bert_dir):
    return model_load.load_model(
        model_load.resolve(str(tiny_bert_dir)), "AutoModelForSequenceClassification", num_labels=2
    )


class RankLog(Callback):
    """Records AdaLoRA's live ranks at every step."""

    def __init__(self):
        self.ranks: list[int] = []

    def on_step_begin(self, ctx):
        self.ranks.append(sum(adalora.ranks(ctx.model).values()))

    def on_evaluate(self, ctx, metrics):
        self.ranks.append(sum(adalora.ranks(ctx.model).values()))


def test_adalora_prunes_ranks_during_training(tmp_path, tiny_bert_dir):
    cfg = run_cfg(
        tmp_path,
        tiny_bert_dir,
        "method=adalora",
        "method.init_r=4",
        "method.target_r=1",
        "method.target_modules=[query,value]",
        "train.max_steps=20",
    )
    log = RankLog()
    finetune.run(cfg, quiet=True, log=lambda m: None, callbacks=(log,))
    layers = 2 * 2  # 2 transformer layers x (query, value)
    assert log.ranks[0] == 4 * layers  # full rank while warming up
    assert log.ranks[-1] <= 1 * layers  # pruned to the target budget by the end
    assert log.ranks[-1] > 0
    steps_pruned = [i for i in range(1, len(log.ranks)) if log.ranks[i] < log.ranks[i - 1]]
    assert len(steps_pruned) >= 2, f"ranks should shrink gradually, got {log.ranks}"
    saved = (tmp_path / "run" / "model" / "adapter_config.json").read_text()
    assert '"total_step": 20' in saved  # the real schedule, not the placeholder


def test_adalora_target_above_init_is_an_error(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    with pytest.raises(ConfigError, match="method.target_r: 8 must not exceed method.init_r"):
        adalora.apply(model, adalora.Config(init_r=4, target_r=8), head)


def test_loraplus_puts_b_matrices_at_ratio_times_lr(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    cfg = loraplus.Config(lr_ratio=16)
    model = loraplus.apply(model, cfg, head)
    groups = loraplus.param_groups(model, 1e-3, 0.01, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr = {g["lr"]: [names[id(p)] for p in g["params"]] for g in groups}
    assert all(".lora_B." in n for n in by_lr[1.6e-2])
    assert not any(".lora_B." in n for lr, ns in by_lr.items() if lr != 1.6e-2 for n in ns)
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())


def test_adapter_unknown_architecture_names_the_layouts(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    for layer in model.bert.encoder.layer:  # hide the attention output so no known layout matches
        layer.attention.output = torch.nn.Identity()
    with pytest.raises(
        ConfigError, match="adapter does not know where attention and feed-forward outputs are.*known layouts"
    ):
        adapter.apply(model, adapter.Config(), head)


def test_adapter_variants_place_adapters(tiny_bert_dir):
    for variant, per_layer in (("houlsby", 2), ("pfeiffer", 1)):
        model, head = bert(tiny_bert_dir)
        model = adapter.apply(model, adapter.Config(variant=variant, reduction_factor=4), head)
        wrapped = [n for n, m in model.named_modules() if isinstance(m, AdaptedLayer)]
        assert len(wrapped) == 2 * per_layer, wrapped
        assert model.bert.encoder.layer[0].output.dense.adapter.down.out_features == 32 // 4


def test_prompt_tuning_text_init_uses_the_words(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    words = model.bert.embeddings.word_embeddings.weight.detach().clone()
    wrapped = prompt_tuning.apply(model, prompt_tuning.Config(num_virtual_tokens=4, init_text="good movie"), head)
    prompt = wrapped.prompt_encoder["default"].embedding.weight.detach()
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(tiny_bert_dir))("good movie")["input_ids"]  # peft keeps [CLS] ... [SEP]
    assert len(ids) == 4
    assert torch.equal(prompt, words[ids])


def test_prompt_tuning_empty_text_is_an_error(tiny_bert_dir):
    model, head = bert(tiny_bert_dir)
    with pytest.raises(ConfigError, match="method.init_text: empty text"):
        prompt_tuning.apply(model, prompt_tuning.Config(init_text="  "), head)


class DieAt(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, ctx):
        if ctx.state.step == self.step:
            raise KeyboardInterrupt


def test_resumed_adalora_equals_uninterrupted(tmp_path, tiny_bert_dir):
    """Interrupted mid-pruning: the checkpoint carries peft's importance averages (the callback's state), so the
    resumed run has the same averages at every later step and ends with the same weights; a resume that lost
    that state has different averages."""
    from tunelab.training import checkpoint

    extra = [
        "method=adalora",
        "method.init_r=4",
        "method.target_r=1",
        "method.target_modules=[query,value]",
        "train.max_steps=20",
        "train.save_every=2",
        "train.keep_checkpoints=all",
        "model.dropout=0",
    ]

    def cfg_in(name: str):
        (tmp_path / name).mkdir()
        return run_cfg(tmp_path / name, tiny_bert_dir, *extra)

    def interrupted(name: str):
        cfg = cfg_in(name)
        with pytest.raises(KeyboardInterrupt):
            finetune.run(cfg, quiet=True, log=lambda m: None, callbacks=(DieAt(9),))
        return cfg, checkpoint.latest(Path(cfg.output_dir) / "checkpoints")

    def at_step(cfg, step: int):
        weights, extra_state = checkpoint.load(Path(cfg.output_dir) / "checkpoints" / f"step-{step}")
        (budget,) = [v for k, v in extra_state["callbacks"].items() if k.endswith("RankBudget")]
        return weights, budget

    straight = cfg_in("a")
    finetune.run(straight, quiet=True, log=lambda m: None)
    cfg, ckpt = interrupted("b")
    assert ckpt.name == "step-8" and at_step(cfg, 8)[1]["exp_avg_ipt"]  # pruning had started: averages exist
    finetune.run(cfg, quiet=True, log=lambda m: None)
    lost_cfg, lost = interrupted("c")  # the same, but the callback state is lost on the way
    state = torch.load(lost / "state.pt", weights_only=False)
    state["callbacks"] = {}
    torch.save(state, lost / "state.pt")
    finetune.run(lost_cfg, quiet=True, log=lambda m: None)
    for step in (12, 20):
        (wa, ba), (wb, bb), (_, bc) = at_step(straight, step), at_step(cfg, step), at_step(lost_cfg, step)
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=f"step {step}: {k}")
        assert ba["rank_pattern"] == bb["rank_pattern"] and ba["exp_avg_ipt"].keys() == bb["exp_avg_ipt"].keys()
    _, ba = at_step(straight, 12)
    _, bb = at_step(cfg, 12)
    _, bc = at_step(lost_cfg, 12)

    def gap(x: dict, y: dict) -> float:  # largest difference relative to the largest average
        return max(float((x[k] - y[k]).abs().max() / x[k].abs().max()) for k in x)

    assert gap(ba["exp_avg_ipt"], bb["exp_avg_ipt"]) < 1e-3  # resumed: the averages continued (float noise only)
    assert gap(ba["exp_avg_ipt"], bc["exp_avg_ipt"]) > 0.05  # lost: they restarted
