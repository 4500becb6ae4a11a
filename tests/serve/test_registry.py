"""Several adapter runs on one base (each equal to that run loaded alone), /v1/predict on a classification run,
and the naming rules for served models."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import train_tiny, write_alpaca
from tests.serve.harness import client, running
from tunelab import cli, runs
from tunelab.errors import ConfigError
from tunelab.generation import GenerationConfig, generate
from tunelab.serve import registry

PROMPT = [{"role": "user", "content": "Say the word good"}]


def _lora_run(tmp: Path, tiny_llama_dir: Path, name: str, seed: int) -> Path:
    train = write_alpaca(tmp / f"{name}.json", 16, seed=seed)
    out = tmp / name
    assert (
        cli.main(
            [
                "train",
                "--quiet",
                "task=causal_lm",
                f"model.name={tiny_llama_dir}",
                f"data.train={train}",
                f"data.dev={train}",
                f"output_dir={out}",
                "method=lora",
                "train.max_steps=4",
                "train.batch_size=8",
                "train.lr=5e-2",
                "train.precision=fp32",
                f"train.seed={seed}",
                "task.eval_generations=0",
                "model.max_length=64",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_llama_dir):
    tmp = tmp_path_factory.mktemp("adapters")
    return [_lora_run(tmp, tiny_llama_dir, name, seed) for name, seed in (("alpha", 1), ("beta", 2))]


def _alone(run: Path) -> str:
    loaded = runs.load_run(run)
    from tunelab.data import templates

    tpl = templates.chat_template(loaded.tokenizer, loaded.cfg.task.chat_template)
    return generate(
        loaded.model, loaded.tokenizer, [PROMPT], GenerationConfig(max_new_tokens=8), template=tpl, log=lambda m: None
    )[0].text


def test_adapters_share_one_base_and_each_equals_its_run_alone(adapters, tiny_llama_dir):
    alone = {run.name: _alone(run) for run in adapters}
    served = registry.load_all([str(adapters[0]), f"b2={adapters[1]}", f"base={tiny_llama_dir}"], log=lambda m: None)
    assert served["alpha"].model is served["b2"].model is served["base"].model  # one copy: two adapters + base
    with running(served) as url:
        c = client(url)
        assert [m.id for m in c.models.list().data] == ["alpha", "b2", "base"]
        got = {
            name: c.chat.completions.create(model=name, messages=PROMPT, max_tokens=8, temperature=0)
            .choices[0]
            .message.content
            for name in ("alpha", "b2", "base", "alpha")
        }
    assert got["alpha"] == alone["alpha"] and got["b2"] == alone["beta"]
    assert len({got["alpha"], got["b2"], got["base"]}) == 3  # the adapters really change the output
    from tunelab.generation import target

    tgt = target.load(str(tiny_llama_dir))
    plain = generate(tgt.model, tgt.tokenizer, [PROMPT], GenerationConfig(max_new_tokens=8), template=tgt.template)
    assert got["base"] == plain[0].text  # the shared base answers with every adapter disabled


def test_lora_adapters_and_their_base_decode_in_one_mixed_batch(adapters, tiny_llama_dir):
    """Concurrent requests to two LoRA adapters and the plain base share running steps (peft's adapter_names, one
    row per adapter), and each still answers exactly as it does alone."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.serve.test_batching import _metrics

    served = registry.load_all([str(adapters[0]), f"b2={adapters[1]}", f"base={tiny_llama_dir}"], log=lambda m: None)
    assert {s.batch_key() for s in served.values()} == {served["alpha"].batch_key()}  # one running batch for all

    def ask(url, name):
        r = client(url).chat.completions.create(model=name, messages=PROMPT, max_tokens=12, temperature=0)
        return r.choices[0].message.content

    names = ["alpha", "b2", "base"]
    with running(served) as url:
        alone = {name: ask(url, name) for name in names}
    handle = served["alpha"].model.register_forward_pre_hook(lambda *_: time.sleep(0.02))  # requests overlap
    try:
        with running(served, max_wait_ms=200) as url:
            with ThreadPoolExecutor(3) as pool:
                together = dict(zip(names, pool.map(lambda n: ask(url, n), names)))
            m = _metrics(url)
    finally:
        handle.remove()
    assert together == alone and len(set(alone.values())) == 3
    # some decode steps ran rows of different models: separate batches would each hold one row
    assert m['tunelab_batch_size_bucket{le="1"}'] < m["tunelab_batch_size_count"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, tiny_bert_dir):
    return train_tiny(tmp_path_factory.mktemp("cls"), tiny_bert_dir, "method=lora", name="sentiment")


def test_predict_on_a_classification_run_equals_the_task_predict(classifier):
    from tunelab.data.sources import Row
    from tunelab.tasks import classification

    texts = ["good fun movie", "awful dull plot"]
    loaded = runs.load_run(classifier)
    want = classification.predict(
        loaded.model, loaded.tokenizer, loaded.labels, [Row(t, None, None, 1) for t in texts], 256
    )
    served = registry.load_all([str(classifier)], log=lambda m: None)
    with running(served) as url:
        r = httpx.post(url + "/v1/predict", json={"model": "sentiment", "input": texts})
        bad = httpx.post(url + "/v1/predict", json={"model": "sentiment", "input": ["ok", " "]})
        wrong = httpx.post(url + "/v1/completions", json={"model": "sentiment", "prompt": "x"})
        metrics = httpx.get(url + "/metrics").text
    assert r.status_code == 200
    data = r.json()["data"]
    assert [d["input"] for d in data] == texts and [d["label"] for d in data] == [w["label"] for w in want]
    for d, w in zip(data, want):
        assert d["probs"] == pytest.approx(w["probs"], abs=1e-5) and set(d["probs"]) == {"0", "1"}
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert wrong.status_code == 400 and "use /v1/predict" in wrong.json()["error"]["message"]
    # predicted labels are counted for alert rules on the label mix (the failed request adds none)
    counted = {lab: sum(d["label"] == lab for d in data) for lab in {d["label"] for d in data}}
    for lab, n in counted.items():
        assert f'tunelab_predictions_total{{label="{lab}",model="sentiment"}} {n}' in metrics


def test_concurrent_predict_requests_share_one_forward(classifier):
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tests.serve.test_batching import _metrics

    served = registry.load_all([str(classifier)], log=lambda m: None)
    handle = served["sentiment"].model.register_forward_pre_hook(lambda *_: time.sleep(0.05))
    texts = ["good fun movie", "awful dull plot", "fine", "a long and boring film"]
    try:
        with running(served) as url:
            alone = [httpx.post(url + "/v1/predict", json={"model": "sentiment", "input": t}).json() for t in texts]
            with ThreadPoolExecutor(8) as pool:
                got = list(
                    pool.map(
                        lambda i: httpx.post(url + "/v1/predict", json={"model": "sentiment", "input": texts[i % 4]}),
                        range(8),
                    )
                )
            m = _metrics(url)
    finally:
        handle.remove()
    for i, r in enumerate(got):
        (d,) = r.json()["data"]
        assert d["label"] == alone[i % 4]["data"][0]["label"]
        assert d["probs"] == pytest.approx(alone[i % 4]["data"][0]["probs"], abs=1e-5)
    assert m["tunelab_pooled_requests_sum"] > m["tunelab_pooled_requests_count"]


@pytest.mark.parametrize(
    "items, message",
    [
        (["a=x", "a=y"], r"model name\(s\) a given twice"),
        (["bad/name=x"], "model name 'bad/name' must be"),
        ([], "give at least one RUN_DIR or MODEL"),
    ],
)
def test_naming_errors(items, message):
    with pytest.raises(ConfigError, match=message):
        registry.parse_items(items)


def test_run_folder_named_after_its_folder(tmp_path):
    (tmp_path / "my-run").mkdir()
    assert registry.parse_items([str(tmp_path / "my-run"), "smollm2-135m"]) == [
        ("my-run", str(tmp_path / "my-run")),
        ("smollm2-135m", "smollm2-135m"),
    ]
