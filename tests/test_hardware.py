"""Precision is chosen from what the processor can do: both branches exercised by faking the capability check."""

from __future__ import annotations

import json

import pytest
import yaml

from tunelab import hardware

EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
physical id\t: 0
core id\t\t: 0

processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 avx avx2 fma bmi2
physical id\t: 0
core id\t\t: 0
"""

XEON_BF16 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480
flags\t\t: avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8
physical id\t: 0
core id\t\t: 0

processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480
flags\t\t: avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8
physical id\t: 0
core id\t\t: 1
"""

ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid sve bf16 i8mm
CPU part\t: 0xd40
"""


def test_cpu_info_reads_flags_and_cores():
    amd = hardware.cpu_info(EPYC_AVX2)
    assert amd.model == "AMD EPYC 7B12"
    assert amd.flags == {"avx2", "fma"}
    assert amd.physical_cores == 1  # two logical CPUs on one core (SMT)
    xeon = hardware.cpu_info(XEON_BF16)
    assert {"avx512_bf16", "amx_bf16", "amx_tile"} <= xeon.flags
    assert xeon.physical_cores == 2
    arm = hardware.cpu_info(ARM)
    assert {"bf16", "sve", "asimd", "i8mm"} <= arm.flags


def test_native_bf16_needs_both_the_flag_and_the_kernel(monkeypatch):
    monkeypatch.setattr(hardware, "_mkldnn_bf16_supported", lambda: True)
    assert hardware.native_bf16("cpu", hardware.cpu_info(XEON_BF16))[0]
    ok, why = hardware.native_bf16("cpu", hardware.cpu_info(EPYC_AVX2))
    assert not ok and "no native bf16" in why
    monkeypatch.setattr(hardware, "_mkldnn_bf16_supported", lambda: False)
    ok, why = hardware.native_bf16("cpu", hardware.cpu_info(XEON_BF16))
    assert not ok and "scalar kernel" in why


FAST = {"fp32": 100.0, "bf16": 800.0}
SLOW = {"fp32": 17.0, "bf16": 0.4}
NATIVE_BUT_SLOWER = {"fp32": 150.0, "bf16": 85.0}


@pytest.mark.parametrize(
    "native, rates, expected",
    [
        ((True, "CPU has amx_bf16"), FAST, "bf16"),
        ((True, "CPU has avx512_bf16"), NATIVE_BUT_SLOWER, "fp32"),  # native, but MKL's fp32 beats oneDNN's bf16 here
        ((False, "no native bf16"), SLOW, "fp32"),
    ],
)
def test_auto_picks_bf16_only_where_native_and_faster(native, rates, expected):
    chosen = hardware.resolve_precision("auto", "cpu", native=native, speed=lambda: rates)
    assert chosen.name == expected
    assert chosen.reason.startswith("auto:")
    assert hardware.slow_bf16_warning(chosen) is None


def test_auto_does_not_measure_without_native_support():
    def boom():
        raise AssertionError("measured although the capability check already said no")

    assert hardware.resolve_precision("auto", "cpu", native=(False, "no"), speed=boom).name == "fp32"


def test_explicit_bf16_on_a_slow_cpu_runs_but_warns_with_the_measurement():
    chosen = hardware.resolve_precision("bf16", "cpu", native=(False, "no native bf16 dot product"), speed=lambda: SLOW)
    assert chosen.name == "bf16"
    warning = hardware.slow_bf16_warning(chosen)
    assert "0.4 vs fp32 17.0 GFLOP/s" in warning and "42x slower" in warning and "precision=auto" in warning


def test_explicit_choices_are_kept():
    assert hardware.resolve_precision("fp32", "cpu", native=(True, "x"), speed=lambda: FAST).name == "fp32"
    assert hardware.resolve_precision("bf16", "cpu", native=(True, "x"), speed=lambda: NATIVE_BUT_SLOWER).name == "bf16"
    assert hardware.resolve_precision("auto", "cuda", native=(True, "CUDA device supports bf16")).name == "bf16"
    assert hardware.resolve_precision("auto", "cuda", native=(False, "no bf16")).name == "fp32"


def test_measurement_is_cached_per_machine(tmp_path):
    calls = []

    def measure(dtype):
        calls.append(dtype)
        return 10.0

    info = hardware.cpu_info(XEON_BF16)
    first = hardware.measured_speedup(info, tmp_path, measure)
    second = hardware.measured_speedup(info, tmp_path, measure)
    assert first == second == {"fp32": 10.0, "bf16": 10.0}
    assert calls == ["fp32", "bf16"]
    other = hardware.measured_speedup(hardware.cpu_info(EPYC_AVX2), tmp_path, measure)
    assert other == first and len(calls) == 4  # another CPU is measured anew


def test_matmul_rate_is_measured():
    assert hardware.matmul_gflops("fp32", n=64, seconds=0.01) > 0


@pytest.mark.parametrize(
    "native, rates, expected", [((True, "CPU has amx_bf16"), FAST, "bf16"), ((False, "no native bf16"), SLOW, "fp32")]
)
def test_training_records_the_choice(tmp_path, tiny_bert_dir, sentiment_tsv, monkeypatch, native, rates, expected):
    from tunelab import config
    from tunelab.recipes import finetune

    monkeypatch.setattr(hardware, "native_bf16", lambda device_type="cpu", info=None: native)
    monkeypatch.setattr(hardware, "measured_speedup", lambda *a, **k: rates)
    out = tmp_path / "run"
    cfg = config.load(
        None,
        [
            f"model.name={tiny_bert_dir}",
            f"data.train={sentiment_tsv}",
            "data.text_column=sentence",
            "train.max_steps=2",
            "train.batch_size=8",
            f"output_dir={out}",
        ],
    )
    assert cfg.train.precision == "auto"
    logs: list[str] = []
    finetune.run(cfg, quiet=True, log=logs.append)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["precision"] == expected
    final = json.loads((out / "metrics.json").read_text())
    assert final["precision"]["name"] == expected and final["precision"]["reason"].startswith("auto:")
    assert f"Precision: {expected}" in (out / "report.md").read_text()
    assert any(line.startswith(f"precision: {expected}") for line in logs)


def test_resume_keeps_the_precision_the_run_started_with(tmp_path, tiny_bert_dir, sentiment_tsv, monkeypatch):
    from tunelab import config
    from tunelab.recipes import finetune

    out = tmp_path / "run"
    args = [f"model.name={tiny_bert_dir}", f"data.train={sentiment_tsv}", f"output_dir={out}"]
    finetune.prepare_run_dir(finetune.choose_precision(config.load(None, args + ["train.precision=bf16"]))[0])
    monkeypatch.setattr(hardware, "resolve_precision", lambda *a, **k: pytest.fail("re-resolved on resume"))
    cfg, chosen = finetune.choose_precision(config.load(None, args))
    assert cfg.train.precision == chosen.name == "bf16"
    finetune.prepare_run_dir(cfg)  # same config after resolution: resumable, no "different config" error
