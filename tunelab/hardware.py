"""What this machine can do: CPU flags, measured matmul speed, and the precision ``auto`` resolves to.

Precision is asked, never assumed. A bf16 matmul is only fast where the processor has a native bf16
dot product that PyTorch's kernels use (AVX512-BF16 or AMX on x86, the BF16 extension on Arm; CUDA
devices that report bf16 support). Without one, PyTorch falls back to a scalar kernel that runs 20-50x
slower than fp32. Even with one, bf16 is not always faster: on an AVX512-BF16 CPU without AMX, MKL's
fp32 GEMM can beat oneDNN's bf16 GEMM. So ``auto`` picks bf16 on a CPU only when the capability check
passes *and* a short measurement (cached per machine) shows bf16 matmuls clearly faster than fp32.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# x86 flags that decide which kernels run (as /proc/cpuinfo spells them)
X86_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
ARM_FLAGS = ("asimd", "sve", "sve2", "bf16", "i8mm")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
BF16_MIN_SPEEDUP = 1.3  # bf16 autocast also pays casts and fp32 master weights: only worth it when GEMMs gain clearly
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    arch: str
    flags: frozenset[str]  # only the flags in X86_FLAGS / ARM_FLAGS
    logical_cpus: int
    physical_cores: int


@dataclass(frozen=True)
class Precision:
    """The precision a run uses and why (logged, saved in metrics.json and shown in report.md)."""

    name: str  # "fp32" or "bf16"
    reason: str


def cpu_info(cpuinfo_text: str | None = None) -> CpuInfo:
    """Model name, relevant flags and core counts of this CPU (Linux /proc/cpuinfo; a best effort elsewhere)."""
    text = cpuinfo_text if cpuinfo_text is not None else _read("/proc/cpuinfo")
    fields: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    physical_id = "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "flags", "features", "cpu part", "hardware") and key not in fields:
            fields[key] = value
        if key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    words = set((fields.get("flags") or fields.get("features") or "").split())
    arch = platform.machine() or "unknown"
    logical = os.cpu_count() or 1
    model = fields.get("model name") or fields.get("hardware") or platform.processor() or arch
    return CpuInfo(
        model=model,
        arch=arch,
        flags=frozenset(w for w in words if w in X86_FLAGS + ARM_FLAGS),
        logical_cpus=logical,
        physical_cores=max(1, len(cores)) if cores else logical,
    )


def physical_cores() -> int:
    """Physical cores available to this process (hyper-threads share a core's matmul units)."""
    info = cpu_info()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = info.logical_cpus
    return max(1, min(info.physical_cores, usable))


def native_bf16(device_type: str = "cpu", info: CpuInfo | None = None) -> tuple[bool, str]:
    """Whether bf16 matmuls run on native hardware here, and the evidence."""
    import torch

    if device_type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ok, "CUDA device supports bf16" if ok else "CUDA device without bf16 support"
    if device_type != "cpu":
        return False, f"no bf16 capability check for device type '{device_type}'"
    info = info or cpu_info()
    have = sorted(f for f in info.flags if f in BF16_FLAGS)
    kernel_ok = _mkldnn_bf16_supported()
    if have and kernel_ok:
        return True, f"CPU has {'/'.join(have)} and PyTorch's oneDNN bf16 kernels are enabled"
    if have:
        return (
            False,
            f"CPU has {'/'.join(have)} but PyTorch's oneDNN bf16 kernels are unavailable (bf16 matmul falls back to a scalar kernel)",
        )
    return (
        False,
        "CPU has no native bf16 dot product (no avx512_bf16/amx_bf16/bf16 flag): bf16 matmul falls back to a scalar kernel",
    )


def _mkldnn_bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def matmul_gflops(dtype_name: str, n: int = 512, seconds: float = 0.25, device_type: str = "cpu") -> float:
    """Best (n x n) @ (n x n) matmul rate in GFLOP/s over about ``seconds`` (with the current torch threads)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(n, n, dtype=dtype, device=device_type)
    b = torch.randn(n, n, dtype=dtype, device=device_type)
    a @ b  # warm-up (kernel selection, page faults)
    best, deadline = 0.0, time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        a @ b
        if device_type == "cuda":
            torch.cuda.synchronize()
        elapsed = max(time.perf_counter() - start, 1e-9)
        best = max(best, 2 * n**3 / elapsed / 1e9)
        if time.perf_counter() > deadline:
            return best


def measured_speedup(
    info: CpuInfo | None = None, cache_dir: Path | None = None, measure: Callable[[str], float] | None = None
) -> dict[str, float]:
    """fp32 and bf16 matmul GFLOP/s on this CPU with the current thread count; cached per (CPU, flags, torch, threads)."""
    import torch

    info = info or cpu_info()
    key = "|".join(
        [
            info.model,
            ",".join(sorted(info.flags)),
            torch.__version__,
            str(torch.get_num_threads()),
            os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
            os.environ.get("ATEN_CPU_CAPABILITY", ""),
        ]
    )
    path = (cache_dir or _cache_dir()) / "hardware.json"
    saved = _load_json(path)
    if key in saved:
        return saved[key]
    measure = measure or (lambda dt: matmul_gflops(dt, n=384 if dt == "bf16" else 512))
    result = {"fp32": round(measure("fp32"), 1), "bf16": round(measure("bf16"), 1)}
    saved[key] = result
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(saved, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    return result


def resolve_precision(
    requested: str,
    device_type: str = "cpu",
    *,
    native: tuple[bool, str] | None = None,
    speed: Callable[[], dict[str, float]] | None = None,
) -> Precision:
    """Turn ``auto``/``fp32``/``bf16`` into the precision to use here, with the reason.

    ``native`` and ``speed`` default to the real checks (``native_bf16``, ``measured_speedup``); tests pass fakes.
    An explicit ``bf16`` is honoured even where it is slow; the reason then says how slow (the caller warns).
    """
    if requested == "fp32":
        return Precision("fp32", "requested (train.precision=fp32)")
    ok, why = native if native is not None else native_bf16(device_type)
    if device_type != "cpu":
        if requested == "bf16" or ok:
            return Precision("bf16", f"{'requested' if requested == 'bf16' else 'auto'}: {why}")
        return Precision("fp32", f"auto: {why}")
    if requested == "bf16" and not ok:
        rates = (speed or measured_speedup)()
        return Precision(
            "bf16",
            f"requested, but slow here: {why}; measured bf16 {rates['bf16']:.1f} vs fp32 "
            f"{rates['fp32']:.1f} GFLOP/s ({_ratio(rates)}); train.precision=auto would pick fp32",
        )
    if requested == "bf16":
        return Precision("bf16", f"requested ({why})")
    if not ok:
        return Precision("fp32", f"auto: {why}")
    rates = (speed or measured_speedup)()
    gain = rates["bf16"] / max(rates["fp32"], 1e-9)
    if gain >= BF16_MIN_SPEEDUP:
        return Precision(
            "bf16", f"auto: {why}; measured bf16 {rates['bf16']:.0f} vs fp32 {rates['fp32']:.0f} GFLOP/s ({gain:.1f}x)"
        )
    return Precision(
        "fp32",
        f"auto: {why}, but bf16 matmul measured {rates['bf16']:.0f} vs fp32 {rates['fp32']:.0f} GFLOP/s "
        f"({gain:.2f}x, below the {BF16_MIN_SPEEDUP}x that pays for autocast)",
    )


def slow_bf16_warning(precision: Precision) -> str | None:
    """The one-line warning for an explicit bf16 that this machine runs slowly, else None."""
    return f"warning: train.precision=bf16 {precision.reason}" if "slow here" in precision.reason else None


def _ratio(rates: dict[str, float]) -> str:
    fp32, bf16 = rates["fp32"], rates["bf16"]
    return f"bf16 {fp32 / bf16:.0f}x slower" if bf16 < fp32 else f"bf16 {bf16 / max(fp32, 1e-9):.1f}x faster"


def autocast(device_type: str, precision: str):
    """The autocast context for a resolved precision (disabled for fp32)."""
    import torch

    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _cache_dir() -> Path:
    root = os.environ.get("TUNELAB_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "tunelab"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def report() -> dict:
    """Everything `tunelab doctor` shows: CPU, threads, measured matmul rates, allocator, versions, auto's choice."""
    import torch

    from tunelab import launch

    info = cpu_info()
    ok, why = native_bf16("cpu", info)
    rates = {"fp32": round(matmul_gflops("fp32"), 1), "bf16": round(matmul_gflops("bf16", n=384 if ok else 192), 1)}
    chosen = resolve_precision("auto", "cpu", native=(ok, why), speed=lambda: rates)
    return {
        "cpu": {
            "model": info.model,
            "arch": info.arch,
            "flags": sorted(info.flags),
            "missing": sorted(set(X86_FLAGS if info.arch in ("x86_64", "AMD64") else ARM_FLAGS) - info.flags),
            "logical_cpus": info.logical_cpus,
            "physical_cores": physical_cores(),
        },
        "torch_threads": torch.get_num_threads(),
        "matmul_gflops": {**rates, "threads": torch.get_num_threads()},
        "bf16_native": {"ok": ok, "why": why},
        "precision_auto": {"picks": chosen.name, "reason": chosen.reason},
        "allocator": {"tcmalloc_installed": launch.find_tcmalloc(), "tcmalloc_loaded": launch.tcmalloc_loaded()},
        "cuda": torch.cuda.is_available(),
        "versions": versions(),
    }


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Python's and the installed versions of torch, transformers, peft, accelerate, tunelab and ``extra`` packages."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "tunelab", *extra):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
