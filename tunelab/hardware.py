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


def use_threads(n: int | None = None) -> int:
    """Set torch's CPU threads to ``n``; None means $TUNELAB_THREADS, else the physical cores (hyper-threads slow
    matmuls down, and torch's own default can oversubscribe a machine another process is using). Returns it."""
    import torch

    n = n or _env_threads() or physical_cores()
    torch.set_num_threads(n)
    return n


def _env_threads() -> int | None:
    text = os.environ.get("TUNELAB_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


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
    return matmul_rates((dtype_name,), n, seconds, device_type)[dtype_name]


def matmul_rates(
    dtype_names=("fp32", "bf16"), n: int = 512, seconds: float = 0.25, device_type: str = "cpu"
) -> dict[str, float]:
    """Best matmul rate per dtype, GFLOP/s, measured on the same (n x n) shape with the dtypes interleaved.

    Interleaving (fp32, bf16, fp32, bf16, ...) makes both see the same machine load, so a busy neighbour
    shifts both rates rather than the ratio that ``auto`` decides on. Each dtype runs at least twice.
    """
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    pairs = {
        name: (
            torch.randn(n, n, dtype=dtypes[name], device=device_type),
            torch.randn(n, n, dtype=dtypes[name], device=device_type),
        )
        for name in dtype_names
    }
    best = {name: 0.0 for name in dtype_names}
    for a, b in pairs.values():
        a @ b  # warm-up (kernel selection, page faults)
    deadline, rounds = time.perf_counter() + seconds, 0
    while rounds < 2 or time.perf_counter() < deadline:
        for name, (a, b) in pairs.items():
            start = time.perf_counter()
            a @ b
            if device_type == "cuda":
                torch.cuda.synchronize()
            best[name] = max(best[name], 2 * n**3 / max(time.perf_counter() - start, 1e-9) / 1e9)
        rounds += 1
    return best


ISA_CAP_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
_MEASURED: dict[
    str, dict[str, float]
] = {}  # this process's measurements (the test suite gives each test its own cache folder)


def cpu_kind(info: CpuInfo | None = None, torch_capability: str | None = None) -> tuple[str, str]:
    """(short name, label) of the kind of CPU as far as training speed goes, e.g. ("avx512-bf16-noamx", ...).

    The kinds differ in which GEMMs are fast: AMX tiles (bf16 far ahead of fp32), AVX512-BF16 without AMX
    (bf16 dot products, but MKL's fp32 GEMM can still win), AVX-512, AVX2 only (bf16 falls back to a
    scalar kernel). When ``ATEN_CPU_CAPABILITY``/``ONEDNN_MAX_CPU_ISA``/``MKL_ENABLE_INSTRUCTIONS`` cap the
    instruction set below what the CPU has, the kind is the emulated one and the label says so.
    """
    info = info or cpu_info()
    if torch_capability is None:
        torch_capability = _torch_capability()
    flags = info.flags
    if info.arch in ("aarch64", "arm64"):
        return ("arm-bf16", "Arm with BF16") if "bf16" in flags else ("arm", "Arm without BF16")
    if "amx_bf16" in flags:
        kind = ("amx", "AMX (bf16 tiles)")
    elif "avx512_bf16" in flags:
        kind = ("avx512-bf16-noamx", "AVX512-BF16 without AMX")
    elif "avx512f" in flags:
        kind = ("avx512", "AVX-512 without BF16")
    elif "avx2" in flags:
        kind = ("avx2", "AVX2 only")
    else:
        kind = (info.arch, f"{info.arch} without AVX2")
    caps = isa_caps()
    capped = (
        torch_capability.upper() in ("AVX2", "DEFAULT")
        and kind[0] not in ("avx2",)
        and info.arch in ("x86_64", "AMD64")
    )
    if capped or (caps and kind[0] != "avx2"):
        isa = (
            "avx2"
            if torch_capability.upper() == "AVX2" or "AVX2" in " ".join(caps.values()).upper()
            else torch_capability.lower()
        )
        how = " ".join(f"{k}={v}" for k, v in sorted(caps.items()))
        return f"{isa}-emulated", f"emulated {isa.upper()} (ISA capped on {info.model}, {kind[1]}; {how})"
    return kind


def _torch_capability() -> str:
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


def isa_caps() -> dict[str, str]:
    """Environment variables that cap the instruction sets PyTorch, oneDNN or MKL use (set ones only)."""
    return {k: os.environ[k] for k in ISA_CAP_VARS if os.environ.get(k)}


def measured_speedup(
    info: CpuInfo | None = None, cache_dir: Path | None = None, measure: Callable[[str], float] | None = None
) -> dict[str, float]:
    """fp32 and bf16 matmul GFLOP/s on this CPU with the current thread count; cached per (CPU, flags, torch, threads, ISA caps)."""
    import torch

    info = info or cpu_info()
    caps = isa_caps()
    key = "|".join(
        [
            info.model,
            ",".join(sorted(info.flags)),
            torch.__version__,
            str(torch.get_num_threads()),
            ",".join(f"{k}={v}" for k, v in sorted(caps.items())),
        ]
    )
    if measure is None and key in _MEASURED:
        return _MEASURED[key]
    path = (cache_dir or _cache_dir()) / "hardware.json"
    saved = _load_json(path)
    if key in saved:
        if measure is None:
            _MEASURED[key] = saved[key]
        return saved[key]
    rates = (
        matmul_rates(("fp32", "bf16"), n=512) if measure is None else {"fp32": measure("fp32"), "bf16": measure("bf16")}
    )
    result = {"fp32": round(rates["fp32"], 1), "bf16": round(rates["bf16"], 1)}
    saved[key] = result
    if measure is None:
        _MEASURED[key] = result
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


def report(seconds: float = 0.5) -> dict:
    """Everything `tunelab doctor` shows: CPU, kind, threads, measured matmul rates, allocator, versions, auto's choice."""
    import torch

    from tunelab import launch

    info = cpu_info()
    ok, why = native_bf16("cpu", info)
    rates = {k: round(v, 1) for k, v in matmul_rates(("fp32", "bf16"), n=512, seconds=seconds).items()}
    chosen = resolve_precision("auto", "cpu", native=(ok, why), speed=lambda: rates)
    kind, label = cpu_kind(info)
    return {
        "cpu": {
            "model": info.model,
            "arch": info.arch,
            "flags": sorted(info.flags),
            "missing": sorted(set(X86_FLAGS if info.arch in ("x86_64", "AMD64") else ARM_FLAGS) - info.flags),
            "logical_cpus": info.logical_cpus,
            "physical_cores": physical_cores(),
        },
        "kind": {"name": kind, "label": label, "torch_cpu_capability": _torch_capability(), "isa_caps": isa_caps()},
        "torch_threads": torch.get_num_threads(),
        "matmul_gflops": {**rates, "threads": torch.get_num_threads(), "shape": "512x512 @ 512x512"},
        "bf16_native": {"ok": ok, "why": why},
        "precision_auto": {"picks": chosen.name, "reason": chosen.reason},
        "allocator": {"tcmalloc_installed": launch.find_tcmalloc(), "tcmalloc_loaded": launch.tcmalloc_loaded()},
        "cuda": torch.cuda.is_available(),
        "versions": versions(),
    }


def format_report(rep: dict) -> list[str]:
    """`tunelab doctor`'s lines for a ``report()`` (the benchmarks write the same lines into every results file)."""
    cpu, mm, alloc, kind = rep["cpu"], rep["matmul_gflops"], rep["allocator"], rep["kind"]
    caps = ", ".join(f"{k}={v}" for k, v in kind["isa_caps"].items())
    tcmalloc = (
        "loaded"
        if alloc["tcmalloc_loaded"]
        else "installed, not loaded"
        if alloc["tcmalloc_installed"]
        else "not installed (make tcmalloc: ~1.5x faster training)"
    )
    return [
        f"cpu          {cpu['model']} ({cpu['arch']}), {cpu['physical_cores']} physical cores, {cpu['logical_cpus']} logical CPUs",
        f"flags        {' '.join(cpu['flags']) or 'none of interest'}"
        + (f"  (absent: {' '.join(cpu['missing'])})" if cpu["missing"] else ""),
        f"kind         {kind['name']}: {kind['label']}; PyTorch CPU kernels: {kind['torch_cpu_capability']}"
        + (f" (capped by {caps})" if caps else ""),
        f"threads      torch uses {rep['torch_threads']}",
        f"matmul       fp32 {mm['fp32']:.1f} GFLOP/s, bf16 {mm['bf16']:.1f} GFLOP/s ({mm['shape']}, {mm['threads']} threads, measured now)",
        f"bf16         {'native' if rep['bf16_native']['ok'] else 'not native'}: {rep['bf16_native']['why']}",
        f"precision    auto picks {rep['precision_auto']['picks']}: {rep['precision_auto']['reason']}",
        f"allocator    tcmalloc {tcmalloc}",
        f"cuda         {'available' if rep['cuda'] else 'not available'}",
        "versions     " + ", ".join(f"{k} {v}" for k, v in rep["versions"].items()),
    ]


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
