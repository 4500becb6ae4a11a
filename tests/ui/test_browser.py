"""The dashboard in a real browser (headless Debian chromium through Playwright): runs table, a run's curves and
report, compare, launching a tiny run from the generated form and watching it finish, and a playground request.
Each test saves screenshots in its tmp folder and fails on any browser console error (tests/browser.py)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser import ServerThread, shot
from tests.conftest import write_sentiment
from tunelab.ui.app import build_app
from tunelab.ui.guard import Guard


@pytest.fixture(scope="module")
def server(runs_root):
    with ServerThread(Guard(build_app(runs_root, poll_s=0.2), [], loopback=True)) as srv:
        yield srv


def open_page(page, server, route: str, ready: str):
    page.goto(f"{server.url}/#{route}")
    page.wait_for_selector(f"main[data-ready={ready}]")


def test_runs_table_lists_runs_with_status_and_filters(page, server, tmp_path):
    open_page(page, server, "/", "runs")
    page.wait_for_selector("#runs tr[data-run=full]")
    rows = page.locator("#runs tbody tr[data-run]")
    assert rows.count() >= 2
    for run_id, method in (("full", "full"), ("lora", "lora")):
        row = page.locator(f"#runs tr[data-run='{run_id}']")
        assert row.locator("[data-col=method]").inner_text() == method
        assert row.locator("[data-state]").get_attribute("data-state") == "finished"
        assert row.locator("[data-col=value]").inner_text().startswith("accuracy 0.")
    lora_pct = page.locator("#runs tr[data-run=lora] [data-col=trainable_pct]").inner_text()
    assert lora_pct.endswith("%") and float(lora_pct[:-1]) < 100
    shot(page, tmp_path, "runs")
    page.fill("#filter", "lora")
    assert page.locator("#runs tbody tr[data-run]").count() == 1
    page.fill("#filter", "")
    page.click("#runs th[data-key=name]")  # sort by name, ascending
    assert page.locator("#runs tbody tr[data-run]").first.get_attribute("data-run") == "full"
    page.click("#runs th[data-key=name]")
    assert page.locator("#runs tbody tr[data-run]").first.get_attribute("data-run") == "lora"


def test_run_page_shows_curves_report_and_config(page, server, tmp_path, runs_root):
    open_page(page, server, "/run/lora", "run")
    assert page.locator("#run-state [data-state]").get_attribute("data-state") == "finished"
    # 12 logged steps draw one train-loss path; 3 evaluations draw dots on the dev chart
    assert page.locator("#chart-loss g[data-series='train loss'] path").count() == 1
    assert page.locator("#chart-dev g[data-series='dev/accuracy'] circle").count() == 3
    page.wait_for_selector("#report h2")
    assert "Per class (dev)" in page.inner_text("#report")
    assert page.locator("#report img").evaluate("img => img.complete && img.naturalWidth > 0")
    shot(page, tmp_path, "run")
    page.click("button[data-tab=Config]")
    assert "name: lora" in page.inner_text("#config")
    page.click("button[data-tab='Sample predictions']")
    page.wait_for_selector("#samples tbody tr")
    assert page.locator("#samples tbody tr").count() == 8  # the first 8 dev rows, gold next to predicted


def test_compare_page_overlays_runs_and_diffs_configs(page, server, tmp_path):
    open_page(page, server, "/compare?ids=full,lora", "compare")
    assert page.locator("#compare-loss g[data-series] path").count() == 2
    assert page.locator("#compare-params circle").count() == 2
    diff = page.inner_text("#config-diff")
    assert "method.name" in diff and "lora" in diff
    shot(page, tmp_path, "compare")


def test_launch_a_run_from_the_form_and_watch_it_finish(page, server, tmp_path, tiny_bert_dir, runs_root):
    data = write_sentiment(tmp_path / "train.tsv", n=96)
    open_page(page, server, "/launch", "launch")
    page.select_option("#start-from", "full")  # prefill from a run's config
    expect(page.locator("[data-key='model.name'] input")).to_have_value(re.compile("tiny-bert"))
    page.fill("[data-key=output_dir] input", "from-form")
    page.fill("[data-key='data.train'] input", str(data))
    page.fill("[data-key='train.lr'] input", "fast")
    err = page.locator("[data-error-for='train.lr']")
    err.filter(has_text="valid number").wait_for()
    assert (
        err.inner_text() == "train.lr: Input should be a valid number, unable to parse string as a number (got 'fast')"
    )
    assert page.locator("#launch").is_disabled()
    shot(page, tmp_path, "launch-error")
    page.fill("[data-key='train.lr'] input", "0.01")
    expect(page.locator("#launch")).to_be_enabled()
    assert "output_dir=" in page.inner_text("#command") and page.inner_text("#command").startswith("tunelab train")
    shot(page, tmp_path, "launch")
    page.click("#launch")
    page.wait_for_url("**/#/run/from-form")
    page.wait_for_selector("#run-state [data-state=finished]", timeout=120_000)
    page.wait_for_selector("#report h2")
    assert page.locator("#chart-loss g[data-series='train loss'] path").count() == 1
    shot(page, tmp_path, "launched")
    assert (runs_root / "from-form" / "metrics.json").is_file()


def test_playground_predicts_with_a_finished_run(page, server, tmp_path):
    open_page(page, server, "/playground?id=full", "playground")
    page.fill("#pg-input", "good great fun movie\nawful dull plot")
    page.click("#pg-predict")
    page.wait_for_selector(".prediction")
    assert page.locator(".prediction").count() == 2
    labels = page.locator(".pred-label").all_inner_texts()
    assert set(labels) <= {"0", "1"}
    shot(page, tmp_path, "playground")


def test_playground_highlights_ner_entities(page, server, tmp_path, runs_root, tiny_bert_dir):
    from tests.tasks.test_token_classification import ner_config
    from tunelab.recipes import finetune

    cfg = ner_config(tmp_path, tiny_bert_dir, "full", **{"speed.cache": "false", "train.threads": 1})
    cfg.output_dir = str(runs_root / "ner")
    finetune.run(cfg, quiet=True, log=lambda m: None)
    open_page(page, server, "/playground?id=ner", "playground")
    page.fill("#pg-input", "the good actor was in the film story")
    page.click("#pg-predict")
    page.wait_for_selector(".prediction.ner")
    marks = page.locator(".prediction.ner mark.ent")
    assert [
        (m.locator("sup").inner_text(), m.inner_text().rsplit(m.locator("sup").inner_text(), 1)[0]) for m in marks.all()
    ] == [("PER", "actor"), ("WORK", "film story")]
    assert page.inner_text(".prediction.ner").startswith("the good actor")
    open_page(page, server, "/run/ner", "run")
    page.click("button[data-tab='Sample predictions']")
    page.wait_for_selector("#samples tbody tr")
    assert page.locator("#samples tbody tr[data-correct=yes]").count() >= 6  # the tiny NER run reaches F1 >= 0.9
    shot(page, tmp_path, "playground-ner")
