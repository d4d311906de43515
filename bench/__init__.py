"""Benchmarks (`srserve bench ...`); results are recorded under bench/results/."""

from __future__ import annotations

import signal
import sys

from model_store.card import Catalog
from srserve.config import CommonSettings


def served_catalog() -> Catalog:
    """The models a worker on this machine serves: the shipped ones plus SRSERVE_MODELS_DIR."""
    return Catalog.load(CommonSettings().models_dir)


def exit_on_sigterm() -> None:
    """Turn SIGTERM (`kill`, `timeout`) into SystemExit, so the `finally` / `with` blocks of a benchmark
    that started an API and workers stop them instead of leaving them running beside the next run."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
