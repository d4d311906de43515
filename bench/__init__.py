"""Benchmarks (`srserve bench ...`); results are recorded under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
from pathlib import Path

from model_store.card import Catalog
from model_store.host import cpu_model_name, read_cpuinfo
from srserve.config import CommonSettings


def served_catalog() -> Catalog:
    """The models a worker on this machine serves: the shipped ones plus SRSERVE_MODELS_DIR."""
    return Catalog.load(CommonSettings().models_dir)


def exit_on_sigterm() -> None:
    """Turn SIGTERM (`kill`, `timeout`) into SystemExit, so the `finally` / `with` blocks of a benchmark
    that started an API and workers stop them instead of leaving them running beside the next run."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def host_description() -> str:
    """Kernel, CPU model, the vector ISA PyTorch dispatches to and the core count: VM hosts change between
    sessions (an AVX-512 host ran OpenCV 2.5x faster than an earlier one), so every result names its CPU."""
    import torch

    model = cpu_model_name(read_cpuinfo()) or platform.machine()
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{platform.system()} {platform.release()}; {model} ({platform.machine()}, {isa}), {os.cpu_count()} cores"


def write_results(out_dir: Path, tag: str, record: dict[str, object], markdown: list[str]) -> None:
    """`<tag>.json` (the record: machine, date, rows) and `<tag>.md` (its table) under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{tag}.json").write_text(json.dumps(record, indent=1))
    (out_dir / f"{tag}.md").write_text("\n".join(markdown) + "\n")
