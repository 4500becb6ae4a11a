"""`tunelab quantize RUN OUT --scheme ...`: post-training quantization of the transformer layers' linear weights.

Schemes (CPU):
    int8-dynamic      int8 weights (per output channel) and int8 activations quantized on the fly per batch;
                      torch.ao's dynamic quantization, whose x86 (fbgemm/oneDNN) int8 GEMMs make it faster.
    int8-weight-only  int8 weights (per output channel), activations stay fp32; torchao. Smaller, not faster:
                      the weight is dequantized for each matmul.
    int4-weight-only  4-bit weights in groups of 32 with a scale and zero point each; torchao. torchao 0.18 has no
                      packed int4 CPU kernel, so the values are held one per byte: the accuracy of int4, the size of int8.

Only the linear layers inside the transformer block stack are quantized; embeddings, norms, the pooler and the
task head stay fp32. The result is a run folder in the ``quantized`` format (model/quantized.pt, a state dict
read back with ``weights_only=True``) that every command loads like a training run.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable

import torch

from tunelab.compress.schemes import SCHEMES  # noqa: E402  (torch-free, for the CLI parser)
from tunelab.errors import TunelabError

INT4_GROUP = 32
STATE_FILE = "quantized.pt"
BACKENDS = ("torch",)


@contextlib.contextmanager
def quiet_torchao():
    """torchao logs a warning per optional CUDA/C++ extension it cannot load; none of them is used on the CPU."""
    logger = logging.getLogger("torchao")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def torchao_module():
    try:
        with quiet_torchao():
            import torchao.quantization as tq
    except ImportError:
        raise TunelabError(
            "this scheme needs torchao: pip install 'tunelab[compress]' (or pip install 'torchao>=0.18,<0.19')"
        ) from None
    return tq


def target_linears(model: torch.nn.Module) -> list[str]:
    """Names of the nn.Linear layers inside the transformer block stack (never embeddings, pooler or task head)."""
    from tunelab.methods.base import find_layers

    stack, _ = find_layers(model)
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith(stack + ".")]


def quantize_linears(model: torch.nn.Module, scheme: str, names: list[str]) -> torch.nn.Module:
    """Quantize the named linear layers in place (int8-dynamic replaces the modules; torchao swaps their weights)."""
    if scheme not in SCHEMES:
        raise TunelabError(f"--scheme {scheme}: unknown; choose one of {', '.join(SCHEMES)}")
    chosen = set(names)
    if scheme == "int8-dynamic":
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        with _quiet_deprecation():
            return quantize_dynamic(
                model, {n: per_channel_dynamic_qconfig for n in chosen}, dtype=torch.qint8, inplace=True
            )
    tq = torchao_module()
    if scheme == "int8-weight-only":
        config = tq.Int8WeightOnlyConfig()
    else:
        from torchao.quantization.granularity import PerGroup

        bad = [n for n in chosen if model.get_submodule(n).in_features % INT4_GROUP]
        if bad:
            raise TunelabError(
                f"int4-weight-only: {bad[0]} has {model.get_submodule(bad[0]).in_features} inputs, not a multiple of the group size {INT4_GROUP}"
            )
        config = tq.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(INT4_GROUP))
    with quiet_torchao():
        tq.quantize_(model, config, filter_fn=lambda _m, fqn: fqn in chosen)
    return model


@contextlib.contextmanager
def _quiet_deprecation():
    """torch.ao.quantization warns that it moves to torchao; its dynamic int8 kernels are still the fast CPU path."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings(
            "ignore", category=UserWarning, message=".*quantize_per_tensor.*|.*_make_per_channel.*|.*TypedStorage.*"
        )
        yield


def linear_shapes(model: torch.nn.Module) -> dict[str, list[int]]:
    """(out, in) of every linear layer, so a reload can rebuild a pruned model's shapes before loading."""
    return {n: [m.out_features, m.in_features] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def save(model: torch.nn.Module, tokenizer, model_dir: Path, scheme: str, names: list[str], shapes: dict) -> dict:
    """Write config.json, the tokenizer and the quantized state dict; returns the format record."""
    model.config.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    torch.save(model.state_dict(), model_dir / STATE_FILE)
    return {"format": "quantized", "scheme": scheme, "about": SCHEMES[scheme], "layers": names, "shapes": shapes}


def load(run_dir: Path, cfg, labels, info: dict, backend: str):
    """Rebuild a quantized run: architecture from config.json, shapes from the record, then the stored tensors."""
    from tunelab import runs
    from tunelab.compress.structure import reshape_linears
    from tunelab.models import load as model_load
    from tunelab.tasks import TASKS

    model_dir = Path(run_dir) / "model"
    model = model_load.build_from_config(model_dir, TASKS[cfg.task.name].auto_class)
    reshape_linears(model, info.get("shapes", {}))
    with quiet_torchao():
        if info["scheme"] != "int8-dynamic":
            torchao_module()  # registers torchao's tensor types as safe to load
        with _quiet_deprecation():  # torch.ao's packed weights are read through the deprecated TypedStorage
            state = torch.load(model_dir / STATE_FILE, weights_only=True, map_location="cpu")
    if info["scheme"] == "int8-dynamic":  # torch.ao: quantized modules first, then their packed weights
        quantize_linears(model, info["scheme"], info["layers"])
        model.load_state_dict(state)
    else:  # torchao: the stored tensors are the quantized weights; assign them in place of the fp32 ones
        model.load_state_dict(state, assign=True)
    tokenizer = model_load.load_tokenizer(model_load.Source(str(model_dir)))
    return runs.LoadedRun(cfg, model.eval(), tokenizer, labels, [], backend=backend)


def run(
    src: str | Path,
    out: str | Path,
    scheme: str,
    *,
    dev_rows: int | None = None,
    latency_n: int = 32,
    batch_size: int = 32,
    log: Callable[[str], None] = print,
) -> dict:
    """Quantize the run ``src`` into the new run folder ``out``; returns the cost record (source vs result)."""
    from tunelab.compress import cost, output

    if scheme not in SCHEMES:
        raise TunelabError(f"--scheme {scheme}: unknown; choose one of {', '.join(SCHEMES)}")
    loaded, model, _ = output.load_source(src, "quantize")
    with output.Output(out, src) as result:
        dev = cost.dev_data(loaded.cfg, loaded.tokenizer, loaded.labels, log, dev_rows)
        log(f"quantize: measuring the source on {len(dev.features)} dev examples")
        before = cost.measure(model, dev, cost.serialized_bytes(model), latency_n=latency_n, batch_size=batch_size)
        names, shapes = target_linears(model), linear_shapes(model)
        quantize_linears(model, scheme, names)
        info = save(model, loaded.tokenizer, result.model_dir, scheme, names, shapes)
        log(f"quantize: {len(names)} linear layers to {scheme}; measuring the result")
        reloaded = load(
            result.tmp, loaded.cfg, loaded.labels, info, "torch"
        )  # measure what eval/predict/serve will load
        after = cost.measure(
            reloaded.model, dev, cost.files_bytes(result.model_dir), latency_n=latency_n, batch_size=batch_size
        )
        record = {"step": {"quantize": scheme}, "source": before, "result": after, "machine": cost.machine()}
        rows = cost.compare(before, after, loaded.cfg.train.metric or "loss")
        md = output.report(
            f"quantize {scheme}: {Path(src).name} -> {Path(out).name}",
            rows,
            record["machine"],
            [SCHEMES[scheme], f"{len(names)} linear layers quantized; embeddings, norms and the task head stay fp32."],
        )
        log("\n" + cost.table(rows))
        result.finish(info, record, md, after["dev"])
    return record
