"""Run several engine jobs at once, each in its own thread, as a worker's job threads do."""

from __future__ import annotations

import threading

import numpy as np

from model_store.registry import SRDescriptor
from worker.engine import InferenceEngine


def upscale_concurrently(
    engine: InferenceEngine, jobs: list[tuple[SRDescriptor, np.ndarray]]
) -> dict[int, tuple[np.ndarray, int]]:
    """{job index: (output, largest batch its tiles ran in)} for every job that finished."""
    results: dict[int, tuple[np.ndarray, int]] = {}

    def run(i: int) -> None:
        out, stats = engine.upscale(*jobs[i])
        results[i] = (out, stats.max_batch)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results
