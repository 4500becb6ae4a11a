"""report.html in a real headless Chromium: every section renders, images load, no console errors, no network."""

from __future__ import annotations

import json

import pytest

from tests.browser import shot
from tunelab import cli


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_bert_dir):
    """A tiny classification run with calibration, error analysis, fairness and explanations computed."""
    from tests.conftest import train_tiny

    tmp = tmp_path_factory.mktemp("report-run")
    out = train_tiny(tmp, tiny_bert_dir, "train.max_steps=6", "train.batch_size=16", "train.lr=1e-3", rows=96)
    probe = tmp / "probe.tsv"
    probe.write_text(
        "sentence\tlabel\nhe was good in the movie\t1\nshe was bad in the film\t0\nthe church was dull\t0\n"
    )
    assert cli.main(["fairness", str(out), "--data", str(probe)]) == 0
    assert (
        cli.main(
            [
                "explain",
                str(out),
                "--text",
                "a great fun movie",
                "--text",
                "awful dull plot",
                "--color",
                "never",
                "--steps",
                "16",
            ]
        )
        == 0
    )
    return out


def test_report_html_is_self_contained(full_run):
    page = (full_run / "report.html").read_text(encoding="utf-8")
    for section in ("metrics", "curves", "calibration", "errors", "fairness", "explanations"):
        assert f"<section id='{section}'>" in page, section
    assert (
        "<script" not in page
        and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        and "https://" not in page
    )
    assert "src='data:image/png;base64," in page and "<svg" in page
    md = (full_run / "report.md").read_text(encoding="utf-8")
    assert "## Calibration (dev)" in md and "## Fairness" in md and "## Error analysis (dev)" in md


def test_report_renders_in_chromium(full_run, page, tmp_path):
    # the page fixture fails the test on any console error or page error
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((full_run / "report.html").as_uri())
    page.wait_for_load_state("load")
    ids = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
    assert ids == ["metrics", "curves", "calibration", "errors", "fairness", "explanations"]
    for sid in ids:  # each section is laid out with a visible height
        assert page.eval_on_selector(f"#{sid}", "e => e.getBoundingClientRect().height") > 20, sid
    images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
    assert images and all(ok and w > 100 and h > 100 for ok, w, h in images), images
    svg = page.eval_on_selector(
        "svg.reliability", "e => [e.getBoundingClientRect().width, e.querySelectorAll('rect').length]"
    )
    assert svg[0] > 100 and svg[1] >= 2  # frame + at least one bin bar
    assert page.eval_on_selector_all("#explanations .w", "els => els.length") >= 6  # coloured words
    cells = page.eval_on_selector_all("table.confusion td", "els => els.length")
    assert cells == 4  # 2 x 2 confusion matrix
    assert shot(page, tmp_path, "report").stat().st_size > 10_000
    assert not page.console_errors, page.console_errors
    assert all(u.startswith(("file://", "data:")) for u in requests), requests


def test_explanations_page_renders(full_run, page):
    saved = json.loads((full_run / "explanations.json").read_text())
    assert len(saved) == 2 and saved[0]["kind"] == "classification"
    page.goto((full_run / "explanations.html").as_uri())
    assert page.eval_on_selector_all(".expl", "els => els.length") == 2
    assert not page.console_errors, page.console_errors
