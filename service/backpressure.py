"""Backpressure: above `SRSERVE_MAX_QUEUE_DEPTH` queued jobs, new submissions are refused with 429 +
Retry-After before their body is read, instead of letting the queue (and Redis memory, and the blob
store) grow without bound while workers fall behind. One LLEN per submission."""

from __future__ import annotations

from dataclasses import dataclass

from rq import Queue


@dataclass(frozen=True)
class QueueFull:
    depth: int
    limit: int


def check_queue_depth(queue: Queue, limit: int) -> QueueFull | None:
    """None when there is room; 0 disables the check."""
    if limit <= 0:
        return None
    depth = queue.count
    return QueueFull(depth, limit) if depth >= limit else None
