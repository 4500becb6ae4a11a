"""Several processes through accelerate: sharding, global sums, gathered evaluation, per-process RNG.

tunelab never starts processes itself: ``accelerate launch`` or ``torchrun`` do, and accelerate's
``Accelerator`` reads their environment (gloo on CPU, NCCL on GPUs). Every optimizer batch is split over
the processes; the loss is divided by the item count of the whole batch (summed over processes) and
multiplied by the process count, because DDP/FSDP/DeepSpeed average gradients: N processes therefore
take exactly the step one process takes on the same global batch.
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any

from tunelab.training.evaluation import Evaluator


def is_main_process() -> bool:
    """Whether this is process 0 (from the launcher's environment; no torch import)."""
    return int(os.environ.get("RANK", "0")) == 0


def launched() -> bool:
    """Whether a launcher started several processes (torchrun, accelerate launch, mpirun)."""
    return any(int(os.environ.get(k, "1")) > 1 for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))


def cpu_only() -> bool:
    """Several processes but no accelerator device: accelerate must be told to use CPUs (gloo), or each
    process would silently train alone on the whole batch."""
    if not launched():
        return False
    import torch

    xpu = getattr(torch, "xpu", None)
    return not (torch.cuda.is_available() or (xpu is not None and xpu.is_available()))


def state():
    """accelerate's PartialState for this process (device, process index and count, barriers)."""
    from accelerate import PartialState

    return PartialState(cpu=cpu_only())


def accelerator():
    """The Accelerator for this run (its device and process group come from the launcher; gloo on CPUs)."""
    from accelerate import Accelerator

    return Accelerator(cpu=cpu_only())


def local_share(indices: list[int], accum: int, rank: int, world: int) -> list[tuple[list[int], bool]]:
    """This process's part of one optimizer batch as (micro-batch indices, real) pairs.

    Process ``rank`` takes every ``world``-th example; its share is cut into ``accum`` micro-batches. With
    several processes every process runs exactly ``accum`` forward/backward passes (sharded engines need
    the same collectives everywhere): missing micro-batches are the batch's first example with real=False,
    which the loop weights by zero.
    """
    from tunelab.data.collate import micro_batches

    mine = indices[rank::world]
    parts = [(p, True) for p in micro_batches(mine, accum)] if mine else []
    if world > 1:
        parts += [(indices[:1], False)] * (accum - len(parts))
    return parts


def global_sums(acc, values: list[float]) -> list[float]:
    """Element-wise sums of ``values`` over every process (the values themselves with one process)."""
    if acc.num_processes == 1:
        return list(values)
    import torch

    total = acc.reduce(torch.tensor(values, dtype=torch.float64, device=acc.device), reduction="sum")
    return [float(v) for v in total.tolist()]


def evaluate(acc, model, evaluator: Evaluator, autocast: Any = None) -> dict:
    """Metrics over every item: each process scores its share, results are gathered in item order.

    Every process returns the same metrics. ``model`` must be callable on its own (the unwrapped module).
    """
    import torch

    from tunelab.training import evaluation

    if acc.num_processes == 1:
        return evaluation.evaluate(evaluator, model, autocast)
    from accelerate.utils import gather_object

    mine = list(range(acc.process_index, evaluator.size, acc.num_processes))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast or contextlib.nullcontext():
            results = evaluator.score(model, mine) if mine else []
    finally:
        model.train(was_training)
    parts = gather_object([list(zip(mine, results))])
    ordered = sorted((pair for part in parts for pair in part), key=lambda pair: pair[0])
    return evaluator.summarize([r for _, r in ordered])


def rng_state() -> dict:
    """This process's random states: Python, NumPy, torch CPU and every CUDA device."""
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng(acc) -> list[dict]:
    """Every process's random states, in process order (the same list on every process)."""
    if acc.num_processes == 1:
        return [rng_state()]
    from accelerate.utils import gather_object

    return gather_object([rng_state()])


def restore_rng(acc, states: list[dict] | dict) -> str | None:
    """Restore this process's states; with a different process count, process r takes saved state r mod M.

    Returns a note for the log when the process count changed, else None.
    """
    states = [states] if isinstance(states, dict) else states
    set_rng_state(states[acc.process_index % len(states)])
    if len(states) != acc.num_processes:
        return (
            f"checkpoint was written by {len(states)} process(es), resuming on {acc.num_processes}: "
            "data order and weights continue exactly; random streams (dropout) continue per process modulo the old count"
        )
    return None


# ---------------------------------------------------------------- sharded engines (FSDP, DeepSpeed)


def sharded(acc) -> str | None:
    """ "FSDP" or "DEEPSPEED" when weights or optimizer state are sharded over processes, else None."""
    kind = str(acc.distributed_type).rsplit(".", 1)[-1]
    return kind if kind in ("FSDP", "DEEPSPEED") else None


def check_engine(acc, cfg, gradient_callbacks: list[str]) -> None:
    """Settings the sharded engines need from tunelab's loop, refused with a clear error otherwise.

    Under FSDP and DeepSpeed each process holds only a shard of the gradients (and DeepSpeed steps its optimizer
    inside ``backward``), so callbacks that act on gradients (AdaLoRA, gradual unfreezing) cannot run there,
    and DeepSpeed needs tunelab's own accumulation off.
    """
    from tunelab.errors import ConfigError

    kind = sharded(acc)
    if kind is None:
        return
    if gradient_callbacks:
        raise ConfigError(
            f"{', '.join(gradient_callbacks)} act(s) on gradients, which {kind} shards over processes; "
            "train with DDP (one accelerate process per device without FSDP/DeepSpeed) instead"
        )
    if kind != "DEEPSPEED":
        return
    if cfg.grad_accum != 1:
        raise ConfigError(
            "train.grad_accum: must be 1 under DeepSpeed (it steps the optimizer inside backward); "
            "raise train.batch_size or the process count instead"
        )
    ds = acc.state.deepspeed_plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = max(1, cfg.batch_size // acc.num_processes)
    ds["gradient_clipping"] = cfg.max_grad_norm or 0.0


def full_params(acc, wrapped, writeback: bool = False):
    """A context in which the unwrapped model holds full (gathered) parameters: FSDP's summon_full_params,
    DeepSpeed ZeRO-3's GatheredParameters; nothing to do for DDP or one process."""
    kind = sharded(acc)
    if kind == "FSDP":
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel.summon_full_params(wrapped, writeback=writeback, rank0_only=False)
    if kind == "DEEPSPEED" and acc.state.deepspeed_plugin.zero_stage == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(wrapped.parameters()), modifier_rank=0 if writeback else None)
    return contextlib.nullcontext()


def optimizer_state(acc, wrapped, optimizer) -> dict | None:
    """The full optimizer state (FSDP: consolidated from every shard; every process must call this).

    None under DeepSpeed, whose partitioned state tunelab does not gather: a resumed DeepSpeed run restarts the
    optimizer moments (the loop says so).
    """
    kind = sharded(acc)
    if kind == "DEEPSPEED":
        return None
    if kind == "FSDP":
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel.optim_state_dict(wrapped, optimizer)
    return optimizer.state_dict()


def load_optimizer_state(acc, wrapped, optimizer, state: dict) -> None:
    if sharded(acc) == "FSDP":
        from torch.distributed.fsdp import FullyShardedDataParallel

        state = FullyShardedDataParallel.optim_state_dict_to_load(wrapped, optimizer, state)
    optimizer.load_state_dict(state)


def launcher_warning(parent: list[str] | None = None) -> str | None:
    """A warning when ``accelerate launch --num_processes N`` (N > 1) started a single process, as it does on a
    machine without GPUs unless told ``--multi_gpu``; None otherwise. ``parent``: the launcher's argv (read
    from /proc by default)."""
    if launched() or "ACCELERATE_USE_CPU" not in os.environ:
        return None
    if parent is None:
        try:
            parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return None
    for flag in ("--num_processes", "--num-processes"):
        if flag in parent[:-1] and parent[parent.index(flag) + 1].isdigit() and int(parent[parent.index(flag) + 1]) > 1:
            return (
                "warning: accelerate launch started ONE training process (it does on machines without GPUs); for several "
                "CPU processes run `accelerate launch --multi_gpu --num_processes N -m tunelab train ...` or "
                "`torchrun --nproc_per_node N -m tunelab train ...`"
            )
    return None
