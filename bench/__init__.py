"""Benchmarks (`srserve bench ...`); results are recorded under bench/results/."""

from __future__ import annotations

from model_store.card import Catalog
from srserve.config import CommonSettings


def served_catalog() -> Catalog:
    """The models a worker on this machine serves: the shipped ones plus SRSERVE_MODELS_DIR."""
    return Catalog.load(CommonSettings().models_dir)
