"""ONNX export of runs whose task scores inputs (classification, NER: ``Task.generates`` false), and the onnxruntime back-end that runs them.

Export: torch.onnx (the torch.export-based exporter) with dynamic batch and sequence axes; the graph takes
``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the model has them) and returns ``logits``. It is
checked against PyTorch on dev inputs, one at a time and in padded batches (the largest absolute logit
difference over real, unpadded positions is reported and stored).

Back-end: ``OrtModel`` wraps an onnxruntime session behind the call the tasks already make
(``model(**inputs).logits``), so ``eval``, ``predict`` and ``serve`` use the task's own encoding, decoding and
metrics unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from tunelab.errors import TunelabError

ONNX_FILE = "model.onnx"
BACKENDS = ("onnxruntime",)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise TunelabError(
            f"ONNX export/runtime needs {module}: pip install 'tunelab[compress]' (onnx, onnxscript, onnxruntime)"
        ) from None


class _LogitsOnly(torch.nn.Module):
    """The model as a function of its input tensors returning only the logits (the graph's one output)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def input_names(model, sample: dict) -> tuple[str, ...]:
    """The inputs the graph takes: those in a collated dev batch, minus token_type_ids where the model ignores them."""
    if "attention_mask" not in sample:
        raise TunelabError("ONNX export: the collated dev batch has no attention_mask")
    names = [k for k in INPUTS if k in sample]  # the order of _LogitsOnly.forward's arguments
    if "token_type_ids" in names and not getattr(model.config, "type_vocab_size", 0):
        names.remove("token_type_ids")
    return tuple(names)


def export(model, sample: dict, path: Path, opset: int = 18) -> tuple[str, ...]:
    """Write ``model`` as ONNX at ``path`` with dynamic (batch, sequence) axes; returns the graph's input names."""
    _require("onnxscript")
    from torch.export import Dim

    names = input_names(model, sample)
    batch, seq = Dim("batch", min=1, max=4096), Dim("sequence", min=2, max=model.config.max_position_embeddings)
    args = tuple(sample[n] for n in names)
    # (batch, sequence) for every input; two examples of different length in the sample keep export from specialising
    shapes = tuple({0: batch, 1: seq} for _ in names)  # positional, in _LogitsOnly.forward's order
    try:
        with _quiet_exporter():
            torch.onnx.export(
                _LogitsOnly(model).eval(),
                args,
                str(path),
                input_names=list(names),
                output_names=["logits"],
                dynamic_shapes=shapes,
                dynamo=True,
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many kinds; the user needs the model and the cause
        raise TunelabError(f"ONNX export of {type(model).__name__} failed: {_cause(exc)}") from None
    return names


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter warns about torchvision ops it skips and axis names it merges; neither concerns a text model."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _cause(exc: Exception) -> str:
    """The line of a torch.onnx error that says what went wrong (its message starts with generic next steps)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("## Exception summary") and i + 1 < len(lines):
            return lines[i + 1][:400]
    return f"{type(exc).__name__}: {(lines or [''])[0][:300]}"


class OrtModel(torch.nn.Module):
    """An onnxruntime session that answers ``model(**inputs).logits`` like a transformers model (CPU tensors)."""

    def __init__(self, path: Path, config, threads: int | None = None):
        super().__init__()
        ort = _require("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]
        self.config = config
        # task code asks a model for its device via next(model.parameters()); this one runs on the CPU
        self.register_parameter("device_anchor", torch.nn.Parameter(torch.zeros(0), requires_grad=False))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_,
    ):
        given = {
            "input_ids": input_ids,
            "attention_mask": attention_mask if attention_mask is not None else torch.ones_like(input_ids),
            "token_type_ids": token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids),
        }
        feed = {n: given[n].detach().cpu().numpy().astype("int64") for n in self.names}
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))


@torch.no_grad()
def max_abs_diff(reference, candidate, batches: list[dict]) -> float:
    """Largest |logit difference| between two models over real (unpadded) positions of the given batches."""
    worst = 0.0
    for batch in batches:
        a, b = reference(**batch).logits.float(), candidate(**batch).logits.float()
        diff = (a - b).abs()
        if diff.dim() == 3:  # (batch, seq, labels): ignore padded positions
            diff = diff[batch["attention_mask"].bool()]
        worst = max(worst, float(diff.max()))
    return worst


def load(run_dir: Path, cfg, labels, info: dict, backend: str):
    from tunelab import runs
    from tunelab.models import load as model_load

    model_dir = Path(run_dir) / "model"
    model = OrtModel(model_dir / ONNX_FILE, model_load.load_config(model_dir))
    tokenizer = model_load.load_tokenizer(model_load.Source(str(model_dir)))
    return runs.LoadedRun(cfg, model, tokenizer, labels, [], backend=backend)


def check_task(task, run_dir) -> None:
    """ONNX runs answer ``model(**inputs).logits`` only: tasks that generate need a KV cache and ``generate``."""
    if task.generates:
        raise TunelabError(
            f"{run_dir}: --format onnx exports runs of tasks that score inputs (classification, NER), not "
            f"{task.name}, which generates; export it with --format gguf (llama.cpp)"
        )
