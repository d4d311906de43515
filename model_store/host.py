"""What CPU this is, in the words cards and benchmark records use: the shared VMs change host between
sessions (AVX2 EPYCs, AVX512-BF16 EPYCs, AMX Xeons), and a CPU training's speed and precision follow the
host's bf16 support, so a card that says only "x86_64 CPU" cannot be reproduced or compared."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@cache
def read_cpuinfo() -> str:
    """/proc/cpuinfo's text; empty where there is none (macOS, Windows)."""
    return CPUINFO.read_text() if CPUINFO.is_file() else ""


def cpuinfo_field(cpuinfo: str, name: str) -> str:
    """The first processor's `name` field ("model name", "flags"), empty when absent."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return ""


def cpu_model_name(cpuinfo: str) -> str:
    """"AMD EPYC", "Intel(R) Xeon(R) Platinum 8480+", …; the platform's own words where cpuinfo has none
    (platform.processor() is empty on Linux, hence cpuinfo first); may be empty."""
    return cpuinfo_field(cpuinfo, "model name") or platform.processor()


def cpu_bf16_support(cpuinfo: str) -> str:
    """How this x86 CPU runs bf16 — what decides whether CPU training and serving use it (see precision.py);
    empty where cpuinfo lists no x86 flags."""
    flags = set(cpuinfo_field(cpuinfo, "flags").split())
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX512-BF16, no AMX"
    if "avx512bw" in flags:
        return "AVX-512 without BF16"
    if "avx2" in flags:
        return "AVX2 only"
    return ""


# cpuinfo flags of bf16 arithmetic in hardware: x86 AVX512-BF16 and AMX, Arm's FEAT_BF16 (in "Features")
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_bf16_units(cpuinfo: str) -> bool:
    """Whether the first processor's flags (x86) or features (Arm) list bf16 arithmetic in hardware."""
    flags = cpuinfo_field(cpuinfo, "flags") or cpuinfo_field(cpuinfo, "Features")
    return not BF16_CPU_FLAGS.isdisjoint(flags.split())


def cpu_description(cpuinfo: str, threads: int, cpu_count: int | None, note: str = "") -> str:
    """"AMD EPYC x86_64 CPU (AVX512-BF16, no AMX; 1 of 2 threads)": the threads a job used, not just the
    machine's, since shared machines train with fewer; `note` joins the details (what the process cannot
    see, such as another training beside it)."""
    details = [part for part in (cpu_bf16_support(cpuinfo), f"{threads} of {cpu_count} threads", note) if part]
    name = " ".join(part for part in (cpu_model_name(cpuinfo), platform.machine(), "CPU") if part)
    return f"{name} ({'; '.join(details)})"
