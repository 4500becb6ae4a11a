"""The `serve:` section: file + flags, strict keys with suggestions, ranges; the command's one-line errors."""

from __future__ import annotations

import pytest

from tunelab import cli
from tunelab.errors import ConfigError
from tunelab.serve import config as serve_config


def test_file_then_flags(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("serve:\n  max_batch_size: 4\n  queue_size: 3\n")
    cfg = serve_config.load(path, {"queue_size": 9, "port": None})
    assert (cfg.max_batch_size, cfg.queue_size, cfg.port, cfg.host) == (4, 9, 8000, "127.0.0.1")


@pytest.mark.parametrize(
    "text, message",
    [
        ("serve:\n  max_batch: 4\n", "unknown key 'serve.max_batch' (did you mean 'serve.max_batch_size'?)"),
        ("serve:\n  queue_size: 0\n", "serve.queue_size: Input should be greater than or equal to 1 (got 0)"),
        ("model: {}\n", "expected one top-level mapping `serve:`"),
        ("serve: [\n", ":2: not valid YAML"),
    ],
)
def test_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        serve_config.load(path, {})


def test_command_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["serve", "a=x", "a=y"]) == 2
    assert capsys.readouterr().err == "error: serve: model name(s) a given twice; name them apart with NAME=RUN_DIR\n"
    assert cli.main(["serve", str(tmp_path / "missing"), "--max-batch-size", "0"]) == 2
    assert "serve.max_batch_size: Input should be greater than or equal to 1" in capsys.readouterr().err
