"""Fixtures of the reliability tests: one more API process beside the shared live service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.conftest import LiveService
from tests.reliability.stack import Stack, extra_api

ExtraApi = Callable[..., AbstractContextManager[Stack]]


@pytest.fixture
def make_api(live: LiveService, tmp_path: Path) -> Iterator[ExtraApi]:
    count = 0

    def make(**overrides: str) -> AbstractContextManager[Stack]:
        nonlocal count
        count += 1
        return extra_api(tmp_path / f"api{count}", live.env, live.redis_url, **overrides)

    yield make
