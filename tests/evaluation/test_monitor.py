"""`tunelab monitor`: the sliding-window alert rule over prediction JSONL, its files and its errors."""

from __future__ import annotations

import io
import json

import pytest

from tunelab import cli
from tunelab.errors import DataError, TunelabError
from tunelab.evaluation.monitor import Monitor, Rule, watch


def pred(label: str, p: float = 0.9, text: str = "t") -> dict:
    other = "positive" if label == "negative" else "negative"
    return {"text": text, "label": label, "probs": {label: p, other: round(1 - p, 6), "neutral": 0.0}}


def lines(*labels: str) -> list[str]:
    return [json.dumps(pred(lab, text=f"headline {i}")) for i, lab in enumerate(labels, start=1)]


def events_of(stream: list[str], rule: Rule) -> list[dict]:
    out: list[dict] = []
    watch(stream, rule, "feed.jsonl", out.append)
    return out


def test_alert_fires_once_when_the_share_crosses_and_resolves_once():
    stream = lines("positive", "negative", "negative", "negative", "negative", "positive", "positive", "positive")
    events = events_of(stream, Rule("negative", window=4, threshold=0.75))
    assert [(e["event"], e["line"], e["share"]) for e in events] == [("alert", 4, 0.75), ("resolved", 7, 0.5)]
    # the alert shows the matching headlines of the window, newest last
    assert [x["line"] for x in events[0]["examples"]] == [2, 3, 4]
    assert events[0]["examples"][-1]["text"] == "headline 4"


def test_rule_waits_for_a_full_window_unless_min_count_says_otherwise():
    stream = lines("negative", "negative", "positive", "positive")
    assert events_of(stream, Rule("negative", window=10, threshold=0.5)) == []
    early = events_of(stream, Rule("negative", window=10, threshold=0.5, min_count=2))
    assert [(e["event"], e["line"]) for e in early] == [("alert", 2)]


def test_min_prob_counts_only_confident_predictions():
    stream = [json.dumps(pred("negative", p=0.55)) for _ in range(4)]
    assert events_of(stream, Rule("negative", window=4, threshold=0.5, min_prob=0.6)) == []
    assert len(events_of(stream, Rule("negative", window=4, threshold=0.5, min_prob=0.5))) == 1


def test_prometheus_text_tracks_the_state():
    mon = Monitor(Rule("negative", window=2, threshold=0.5))
    mon.feed(pred("negative"), 1)
    mon.feed(pred("negative"), 2)
    text = mon.prometheus()
    assert 'tunelab_monitor_alerting{label="negative"} 1' in text
    assert 'tunelab_monitor_window_share{label="negative"} 1' in text
    assert 'tunelab_monitor_predictions_total{label="negative"} 2' in text
    assert "# TYPE tunelab_monitor_alerts_total counter" in text


@pytest.mark.parametrize(
    "raw, message",
    [
        ("not json", "feed.jsonl:2: not JSON"),
        ('{"text": "x"}', "feed.jsonl:2: expected a prediction with a string 'label'"),
        ('["negative"]', "feed.jsonl:2: expected a prediction with a string 'label'"),
        ('{"label": "negative", "probs": [0.1]}', "feed.jsonl:2: 'probs' must map labels to numbers"),
    ],
)
def test_bad_lines_name_the_file_and_line(raw, message):
    with pytest.raises(DataError, match=message):
        events_of([lines("positive")[0], raw], Rule("negative", window=2))


def test_unknown_label_is_refused_with_a_suggestion():
    with pytest.raises(TunelabError, match=r"--label 'negatve': not a label .*did you mean 'negative'"):
        events_of(lines("positive"), Rule("negatve"))


@pytest.mark.parametrize(
    "rule, message",
    [
        (Rule("negative", window=0), "--window"),
        (Rule("negative", threshold=0), "--threshold"),
        (Rule("negative", min_prob=1.5), "--min-prob"),
        (Rule("negative", window=5, min_count=6), "--min-count"),
    ],
)
def test_bad_rule_values(rule, message):
    with pytest.raises(TunelabError, match=message):
        rule.check()


def test_command_reads_stdin_writes_alerts_and_metrics_and_never_overwrites(tmp_path, monkeypatch, capsys):
    feed = "\n".join(lines("negative", "negative", "positive", "positive")) + "\n"
    alerts, prom = tmp_path / "alerts.jsonl", tmp_path / "monitor.prom"
    argv = ["monitor", "--label", "negative", "--window", "2", "--alerts", str(alerts), "--metrics", str(prom)]
    monkeypatch.setattr("sys.stdin", io.StringIO(feed))
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert [json.loads(x)["event"] for x in out.splitlines()] == ["alert", "resolved"]
    assert alerts.read_text(encoding="utf-8").splitlines() == out.splitlines()
    assert "tunelab_monitor_alerts_total" in prom.read_text(encoding="utf-8")
    assert "monitor: 4 predictions, 1 alert(s)" in err
    # an existing alerts file is kept: refused without --append, added to with it
    monkeypatch.setattr("sys.stdin", io.StringIO(feed))
    assert cli.main(argv) == 2
    assert "exists; pass --append" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(feed))
    assert cli.main([*argv, "--append"]) == 0
    assert len(alerts.read_text(encoding="utf-8").splitlines()) == 4


def test_command_input_file_errors(tmp_path, capsys):
    assert cli.main(["monitor", "--label", "negative", "--input", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl: file not found" in capsys.readouterr().err
