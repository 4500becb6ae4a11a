"""Screenshots of every `tunelab ui` page for the README (docs/img/ui-*.png), taken in headless chromium.

    python docs/screenshots.py [--runs /tmp/tunelab-shots/runs] [--out docs/img]

Trains real runs first (minilm-l6 on an SST-2 slice from ../shared/data: `tunelab compare` with full, LoRA and
BitFit, 60 steps each; reused when already there), serves the dashboard over them, then drives the browser the way
a user would: runs table, a run page, compare, the launch form (with an inline error, then a launched run watched
live and stopped), and the playground. Uses the same browser launcher as the tests (tests/browser.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SST2 = REPO.parent / "shared" / "data" / "sst2"
COMMON = [
    "model.name=minilm-l6",
    "model.max_length=64",
    f"data.train={SST2 / 'train.tsv'}",
    f"data.dev={SST2 / 'dev.tsv'}",
    "data.text_column=sentence",
    "data.max_train_rows=3000",
    "data.max_dev_rows=400",
    "train.batch_size=16",
    "train.log_every=5",
    "train.eval_every=20",
    "train.threads=2",
]


def train_runs(root: Path) -> None:
    cmp = root / "compare-sst2"
    if (cmp / "compare.json").is_file():
        return
    overrides = [*COMMON, f"output_dir={cmp}", "train.max_steps=60", "tracking.backends=[tensorboard]"]
    subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "compare", *overrides, "--methods", "full,lora,bitfit"], check=True
    )


def train_tiny(root: Path) -> None:
    """--tiny: the tests' 2-layer BERT on toy sentiment rows, trained in this process (seconds, for a busy machine)."""
    cmp = root / "compare-sst2"
    if (cmp / "full" / "metrics.json").is_file():
        return
    import torch
    from transformers import BertConfig, BertModel

    from tests.conftest import _word_tokenizer, write_sentiment
    from tunelab import config
    from tunelab.recipes import finetune

    model_dir = root.parent / "tiny-bert"
    model_dir.mkdir(parents=True, exist_ok=True)
    tok = _word_tokenizer(model_dir)
    torch.manual_seed(0)
    bert = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(bert).save_pretrained(str(model_dir))
    tok.save_pretrained(str(model_dir))
    data = write_sentiment(root.parent / "toy-train.tsv", n=400)
    for method in ("full", "lora", "bitfit"):
        cfg = config.load(
            None,
            [
                f"model.name={model_dir}",
                f"data.train={data}",
                "data.text_column=sentence",
                f"output_dir={cmp / method}",
                f"method={method}",
                "train.batch_size=16",
                "train.lr=3e-3",
                "train.log_every=2",
                "train.eval_every=10",
                "train.max_steps=60",
                "train.threads=1",
                "train.precision=fp32",
                "speed.cache=false",
            ],
        )
        finetune.run(cfg, quiet=True, log=lambda m: None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="/tmp/tunelab-shots/runs")
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    ap.add_argument(
        "--pages",
        default="compare,run,playground,launch,runs",
        help="screenshots to take; launch = the form with an error, then a live run that gets stopped",
    )
    ap.add_argument(
        "--tiny", action="store_true", help="tiny random-init model and toy data instead of minilm on SST-2"
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root, out = Path(args.runs), Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    train_tiny(root) if args.tiny else train_runs(root)

    from playwright.sync_api import sync_playwright

    from tests.browser import ServerThread, launch, skip_reason
    from tunelab.ui.app import build_app
    from tunelab.ui.guard import Guard

    if skip_reason():
        sys.exit(skip_reason())
    want = set(args.pages.split(","))
    with ServerThread(Guard(build_app(root), [], loopback=True)) as srv, sync_playwright() as pw:
        ctx = launch(pw, root.parent / "chromium-profile", viewport=(1360, 900))
        page = ctx.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        def go(route: str, ready: str) -> None:
            page.goto(f"{srv.url}/#{route}")
            page.wait_for_selector(f"main[data-ready={ready}]")

        def shot(name: str, full: bool = True) -> None:
            page.wait_for_timeout(300)
            page.screenshot(path=str(out / f"ui-{name}.png"), full_page=full)
            print(f"wrote {out / f'ui-{name}.png'}")

        if "compare" in want:
            go("/compare?ids=compare-sst2/full,compare-sst2/lora,compare-sst2/bitfit", "compare")
            shot("compare")
        if "run" in want:
            go("/run/compare-sst2/lora", "run")
            page.wait_for_selector("#report h2")
            shot("run", full=False)
        if "playground" in want:
            go("/playground?id=compare-sst2/lora", "playground")
            real = "A warm, funny and beautifully acted film.\nTwo hours of my life I will never get back.\n"
            real += "The plot is thin but the performances carry it."
            page.fill(
                "#pg-input", "the movie was great fun\na dull and awful plot\nlove the actor" if args.tiny else real
            )
            page.click("#pg-predict")
            page.wait_for_selector(".prediction")
            shot("playground")
        if "launch" in want:
            live_run(page, go, shot, args.tiny)
        if "runs" in want:
            go("/", "runs")
            page.wait_for_selector("#runs tbody tr[data-run]")
            shot("runs")
        ctx.close()
    if errors:
        print("console errors:", *errors, sep="\n")
        return 1
    return 0


def live_run(page, go, shot, tiny: bool) -> None:
    """The launch form with an inline error, then the corrected run launched, watched live, and stopped."""
    from playwright.sync_api import expect

    go("/launch?from=compare-sst2/lora", "launch")
    expect(page.locator("[data-key='model.name'] input")).not_to_have_value("")
    page.fill("[data-key=output_dir] input", "lora-r16-live")
    r = page.locator("[data-key='method.r'] >> visible=true")
    r.locator("input").fill("sixteen")
    page.locator("[data-error-for='method.r']").filter(has_text="valid integer").first.wait_for()
    r.scroll_into_view_if_needed()
    page.mouse.wheel(0, 350)  # the error in the middle of the picture, the method's other options below it
    shot("launch-error", full=False)
    r.locator("input").fill("16")
    page.fill("[data-key='train.max_steps'] input", "4000" if tiny else "400")
    expect(page.locator("#launch")).to_be_enabled()
    page.click("#launch")
    page.wait_for_url("**/#/run/lora-r16-live")
    page.wait_for_selector("#run-state [data-state=running]", timeout=180_000)
    deadline = time.time() + 600
    while page.locator("#chart-dev circle").count() < 3 and time.time() < deadline:
        page.wait_for_timeout(1000)
    shot("live", full=False)
    page.click("#stop")
    page.wait_for_selector("#run-state [data-state=interrupted]", timeout=300_000)


if __name__ == "__main__":
    sys.exit(main())
