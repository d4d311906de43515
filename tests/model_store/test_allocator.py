"""`retain_freed_memory` sets glibc's malloc thresholds once, and leaves a user's own settings alone."""

from __future__ import annotations

import subprocess
import sys


def _run(env: dict[str, str]) -> str:
    code = "from model_store.allocator import retain_freed_memory as r; print(r(), r())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_sets_thresholds_on_glibc_once() -> None:
    # a fresh process each: the setting is process-wide and cached
    assert _run({"PATH": "/usr/bin:/bin"}).split() == ["True", "True"]


def test_user_malloc_settings_win() -> None:
    assert _run({"PATH": "/usr/bin:/bin", "MALLOC_TRIM_THRESHOLD_": "131072"}).split() == ["False", "False"]
    assert _run({"PATH": "/usr/bin:/bin", "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}).split() == [
        "False", "False"]
