"""Cards name the CPU a training ran on: model, bf16 support and threads, read from /proc/cpuinfo."""

from __future__ import annotations

import platform

import pytest
import torch

from model_store.host import (
    CPUINFO,
    cpu_bf16_support,
    cpu_description,
    cpu_has_bf16_units,
    cpu_model_name,
    cpuinfo_field,
)
from model_store.train import hardware_string


def cpuinfo_text(model: str, flags: str) -> str:
    """Two processors, as /proc/cpuinfo lists them (tab before the colon, blank line between)."""
    block = f"processor\t: 0\nvendor_id\t: X\nmodel name\t: {model}\nflags\t\t: fpu {flags}\n"
    return block + "\n" + block.replace("processor\t: 0", "processor\t: 1")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile", "AMX-BF16"),
        ("avx2 avx512f avx512bw avx512_bf16", "AVX512-BF16, no AMX"),
        ("avx2 avx512f avx512bw", "AVX-512 without BF16"),
        ("avx avx2 fma", "AVX2 only"),
        ("sse4_2", ""),
    ],
)
def test_bf16_support_follows_the_flags(flags: str, expected: str) -> None:
    assert cpu_bf16_support(cpuinfo_text("Some CPU", flags)) == expected


def test_description_names_model_isa_and_threads() -> None:
    text = cpuinfo_text("AMD EPYC", "avx2 avx512bw avx512_bf16")
    assert cpuinfo_field(text, "model name") == "AMD EPYC"
    assert cpu_description(text, 1, 2) == f"AMD EPYC {platform.machine()} CPU (AVX512-BF16, no AMX; 1 of 2 threads)"


def test_description_without_cpuinfo_still_reads() -> None:
    # aarch64 lists "Features", not "flags", and often no model name: no empty parentheses or doubled words
    text = "processor\t: 0\nFeatures\t: fp asimd\n"
    description = cpu_description(text, 4, 8)
    assert description.endswith("CPU (4 of 8 threads)")
    assert "  " not in description and not description.startswith(" ")
    assert cpu_model_name(text) == platform.processor()


@pytest.mark.skipif(not CPUINFO.is_file(), reason="needs /proc/cpuinfo (Linux)")
def test_training_hardware_names_this_machines_cpu() -> None:
    real = CPUINFO.read_text()
    hardware = hardware_string(torch.device("cpu"))
    assert hardware.startswith(cpuinfo_field(real, "model name"))
    assert f"{torch.get_num_threads()} of" in hardware
    assert cpu_bf16_support(real) in hardware


# first "flags" lines, cut short: Ice Lake Xeon (this VM on 2026-12-07), Sapphire Rapids, Zen 4, Graviton 3
ICE_LAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl avx512_vnni avx512_vbmi2\n"
SAPPHIRE_RAPIDS = "flags\t\t: avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN4 = "flags\t\t: avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
GRAVITON3 = "Features\t: fp asimd sve bf16 i8mm svebf16\n"


@pytest.mark.parametrize(("cpuinfo", "has_units"), [(ICE_LAKE, False), (SAPPHIRE_RAPIDS, True), (ZEN4, True),
                                                    (GRAVITON3, True), ("", False)])
def test_bf16_units_are_read_from_the_cpu_flags(cpuinfo: str, has_units: bool) -> None:
    # oneDNN "supports" bf16 on the Ice Lake too (by conversion, ~4x slower to train): only the flags tell
    assert cpu_has_bf16_units(cpuinfo) is has_units
