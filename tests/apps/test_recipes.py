"""Smoke versions of the application recipes (examples/apps/*/run.sh): each script runs end to end, as a user runs
it, on tiny models and small slices of ../shared/data; the full-size runs and their numbers are in the README.
The three scripts run at the same time (one torch thread each; most of their time is process start-ups and waiting
on a server), so they cost the suite about the longest one rather than the sum."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory, tiny_bert_dir) -> Path:
    """tiny_bert_dir's shape with every id inside the vocabulary. (conftest's word tokenizer lists 'a' twice, so its
    last token, the apostrophe, gets id 92 in a 92-row embedding: real text such as "Children's" would crash it.)"""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-encoder")
    words = list(BertTokenizer.from_pretrained(str(tiny_bert_dir)).get_vocab())
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    cfg = BertConfig.from_pretrained(str(tiny_bert_dir))
    cfg.vocab_size = len(words)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def start_recipe(name: str, out: Path, **env: str) -> tuple[subprocess.Popen, Path]:
    """Start examples/apps/NAME/run.sh OUT in the background (one torch thread); its output goes to OUT.log."""
    full = {
        **os.environ,
        "TUNELAB": str(BIN / "tunelab"),
        "PYTHON": sys.executable,
        "TUNELAB_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    log = out.with_suffix(".log")
    with log.open("w", encoding="utf-8") as f:  # a file, not a pipe: nobody reads a pipe while another test waits
        proc = subprocess.Popen(
            ["bash", str(ROOT / "examples" / "apps" / name / "run.sh"), str(out)],
            env=full,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the script and the server it started
        )
    return proc, log


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def finish(started: tuple[subprocess.Popen, Path], name: str) -> None:
    proc, log = started
    try:
        code = proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError(f"{name}/run.sh ran past 600 s:\n{log.read_text(encoding='utf-8')[-3000:]}") from None
    assert code == 0, f"{name}/run.sh exited {code}:\n{log.read_text(encoding='utf-8')[-6000:]}"


@pytest.fixture(scope="module")
def recipes(request, tmp_path_factory, shared_data, tiny_encoder) -> dict:
    """The three recipes' smoke runs, started together (each is mostly process start-ups, file reads and a server
    waiting for requests, on one torch thread): each test then waits for its own and checks its outputs.
    name -> (output folder, (process, log)); "heads": the headlines of the fpb stream."""
    root = tmp_path_factory.mktemp("apps")
    small = "train.max_steps=2 train.threads=1 train.batch_size=4 speed.cache=false"
    stream = root / "headlines.jsonl"  # a JSONL feed, as a news source would deliver it
    heads = [f"Operating profit fell {n} % in the quarter ." for n in range(12)]
    stream.write_text("".join(json.dumps({"text": h}) + "\n" for h in heads), encoding="utf-8")
    selected = {item.name for item in request.session.items}  # `-k movielens` starts that recipe alone
    wanted = {
        n
        for n in ("customer-service", "fpb-monitor", "movielens")
        if f"test_{n.replace('-', '_')}_recipe_smoke" in selected
    }
    tiny_llama_dir = request.getfixturevalue("tiny_llama_dir") if "customer-service" in wanted else None
    ml_small = f"model.name={tiny_encoder} train.max_steps=2 train.threads=1 train.batch_size=8 data.max_dev_rows=16"
    envs = {
        "customer-service": dict(
            # the first 120 training rows hold all 27 intents, so every dev intent is known
            INTENT_ARGS=f"model.name={tiny_encoder} data.max_train_rows=120 data.max_dev_rows=16 {small}",
            ASSISTANT_ARGS=(
                f"model.name={tiny_llama_dir} data.max_train_rows=8 data.max_dev_rows=2 model.max_length=128 "
                f"task.eval_generations=1 task.eval_max_new_tokens=4 generation.max_new_tokens=4 {small}"
            ),
            CHAT_ARGS="--max-tokens 4",
        ),
        "fpb-monitor": dict(
            METHODS="lora",
            COMPARE_ARGS=(
                f"model.name={tiny_encoder} data.max_train_rows=64 data.max_dev_rows=40 train.max_steps=2 "
                "train.threads=1 speed.cache=false"
            ),
            STREAM=str(stream),
            WINDOW="10",
            THRESHOLD="0.01",  # fires on the first negative prediction of a full window: the alert path runs
        ),
        "movielens": dict(
            PREPARE_ARGS="--users 40 --test-users 10 --history 3 --targets-per-user 2 --candidates 19",
            BASE_MODEL=str(tiny_encoder),
            PAIRS_ARGS=ml_small,
            BIENCODER_ARGS=ml_small,
        ),
    }
    started = {n: (root / n, start_recipe(n, root / n, **env)) for n, env in envs.items() if n in wanted}
    yield {"heads": heads, **started}
    for _, (proc, _) in started.values():  # a test that failed early leaves no recipe running
        stop(proc)


def test_customer_service_recipe_smoke(recipes):
    out, started = recipes["customer-service"]
    finish(started, "customer-service")
    intent = json.loads((out / "intent" / "metrics.json").read_text(encoding="utf-8"))
    assistant = json.loads((out / "assistant" / "metrics.json").read_text(encoding="utf-8"))
    assert "accuracy" in json.dumps(intent) and "rougeL" in json.dumps(assistant)
    transcript = (out / "transcript.md").read_text(encoding="utf-8")
    assert transcript.count("**Customer**") == 3 and transcript.count("**Assistant**") == 3
    metrics = (out / "serve-metrics.txt").read_text(encoding="utf-8")
    chats = [x for x in metrics.splitlines() if x.startswith("tunelab_requests_total") and "/v1/chat/completions" in x]
    assert len(chats) == 1 and '"200"' in chats[0] and chats[0].endswith(" 3")
    assert metrics.count("tunelab_predictions_total{label=") >= 1  # the three intent predictions, by label


def test_fpb_monitor_recipe_smoke(recipes):
    out, started = recipes["fpb-monitor"]
    finish(started, "fpb-monitor")
    heads = recipes["heads"]
    table = json.loads((out / "compare" / "compare.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in table] == ["untrained head", "lora"] and table[1]["status"] == "ok"
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [p["text"] for p in preds] == heads and {p["label"] for p in preds} <= {"positive", "negative", "neutral"}
    prom = (out / "monitor.prom").read_text(encoding="utf-8")
    assert 'tunelab_monitor_predictions_total{label="' in prom and "tunelab_monitor_window_share" in prom
    alerts = [json.loads(x) for x in (out / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    if any(p["label"] == "negative" for p in preds):  # every line is in some full window of 10
        assert alerts and alerts[0]["event"] == "alert"
    served = json.loads((out / "serve-predict.json").read_text(encoding="utf-8"))["data"]
    assert len(served) == 2
    assert "tunelab_predictions_total" in (out / "serve-metrics.txt").read_text(encoding="utf-8")


def test_movielens_recipe_smoke(recipes):
    out, started = recipes["movielens"]
    finish(started, "movielens")
    summary = json.loads((out / "data" / "summary.json").read_text(encoding="utf-8"))
    assert summary["users"] == 40 and summary["test_rows"] == 10 and summary["candidates_per_user"] == 20
    for name in ("popularity", "untuned", "pairs", "biencoder"):
        result = json.loads((out / f"hr-{name}.json").read_text(encoding="utf-8"))
        assert result["users"] == 10 and 0 <= result["ndcg@10"] <= result["hr@10"] <= 1, name
