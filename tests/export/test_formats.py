"""The run-folder format record: declared in model/format.json, validated, and dispatched without probing."""

from __future__ import annotations

import json

import pytest

from tunelab import runs
from tunelab.errors import TunelabError
from tunelab.export import formats


def test_every_format_module_implements_the_protocol():
    for name, module in formats.modules().items():
        assert isinstance(module, formats.RunFormat), name
        assert set(module.BACKENDS) <= set(formats.BACKENDS) - {"auto"}


def test_a_training_run_is_the_method_format(tiny_cls_run):
    assert formats.read(tiny_cls_run) == {"format": "method"}
    assert runs.load_run(tiny_cls_run, backend="torch").backend == "torch"


def test_bad_records_and_unknown_formats_are_clear_errors(tiny_cls_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_cls_run, run)
    record = run / "model" / formats.FORMAT_FILE
    record.write_text("{not json", encoding="utf-8")
    with pytest.raises(TunelabError, match="unreadable format record"):
        runs.load_run(run)
    record.write_text(json.dumps({"format": "tensorrt"}), encoding="utf-8")
    with pytest.raises(TunelabError, match="names format 'tensorrt'.*known: method, quantized, pruned, onnx, gguf"):
        runs.load_run(run)
    with pytest.raises(TunelabError, match="backend 'cuda-graphs': unknown"):
        formats.choose_backend("gguf", ("torch", "llamacpp"), "cuda-graphs")
    assert formats.choose_backend("gguf", ("torch", "llamacpp"), "auto") == "torch"
