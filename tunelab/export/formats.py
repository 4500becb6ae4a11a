"""Run-folder formats: what a run's model/ holds, and how eval, predict, generate and serve rebuild a model from it.

Training writes a method's weights (the ``method`` format; no format.json). ``tunelab quantize``, ``prune`` and
``export`` write a new run folder whose ``model/format.json`` names its format and records what rebuilding
needs; ``runs.load_run`` hands such a folder to the format's ``load``. A format lists the inference back-ends
that can run it (the first is its default): ``torch``, ``onnxruntime`` (ONNX runs) or ``llamacpp`` (GGUF runs).
Adding a format = one module implementing ``RunFormat`` + one line in ``modules()``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable

from tunelab.errors import TunelabError

FORMAT_FILE = "format.json"
METHOD = "method"  # the training output: base model + a method's weights
BACKENDS = ("auto", "torch", "onnxruntime", "llamacpp")


@runtime_checkable
class RunFormat(Protocol):
    """A run-folder format (a module): the back-ends that run it and how to rebuild the model."""

    BACKENDS: tuple[str, ...]  # inference back-ends that can run this format; the first is the default

    def load(self, run_dir: Path, cfg, labels: list[str] | None, info: dict, backend: str):
        """Rebuild the model (a ``runs.LoadedRun``) from ``run_dir/model`` for ``backend`` (already validated)."""


def modules() -> dict[str, RunFormat]:
    """Format name -> module (imported here, not at ``import tunelab``: each pulls in its own back-end lazily)."""
    from tunelab.compress import prune, quantize
    from tunelab.export import gguf, onnx

    return {"quantized": quantize, "pruned": prune, "onnx": onnx, "gguf": gguf}


def read(run_dir: Path) -> dict:
    """The run's format record (``{"format": "method"}`` for a training run, which has no format.json)."""
    path = Path(run_dir) / "model" / FORMAT_FILE
    if not path.is_file():
        return {"format": METHOD}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TunelabError(f"{path}: unreadable format record ({exc})") from None
    if not isinstance(info, dict) or not isinstance(info.get("format"), str):
        raise TunelabError(f'{path}: expected a JSON object with a "format" string')
    return info


def write(model_dir: Path, info: dict) -> None:
    (Path(model_dir) / FORMAT_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def choose_backend(fmt: str, supported: tuple[str, ...], requested: str) -> str:
    """The back-end to run a ``fmt`` run with: ``requested``, or the format's default for ``auto``."""
    if requested not in BACKENDS:
        raise TunelabError(f"backend '{requested}': unknown; choose one of {', '.join(BACKENDS)}")
    if requested == "auto":
        return supported[0]
    if requested not in supported:
        hint = {
            "onnxruntime": "tunelab export RUN OUT --format onnx",
            "llamacpp": "tunelab export RUN OUT --format gguf",
        }.get(requested, "")
        raise TunelabError(
            f"backend '{requested}' cannot run a {fmt} run (it runs with: {', '.join(supported)})"
            + (f"; make one with `{hint}`" if hint else "")
        )
    return requested


def load(run_dir: Path, cfg, labels, info: dict, backend: str):
    """Dispatch to the format named in ``info``; an unknown name (a newer tunelab's format) is a clear error."""
    table = modules()
    module = table.get(info["format"])
    if module is None:
        raise TunelabError(
            f"{run_dir}: model/{FORMAT_FILE} names format '{info['format']}', which this tunelab cannot load "
            f"(known: {', '.join([METHOD, *table])})"
        )
    return module.load(Path(run_dir), cfg, labels, info, choose_backend(info["format"], module.BACKENDS, backend))
