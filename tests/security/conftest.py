"""Fixtures of the security tests: `make_api` starts one more API process (keys required, small
limits...) beside the shared live service, using its Redis, queue, blob store and worker."""

from __future__ import annotations

from tests.reliability.conftest import ExtraApi, make_api

__all__ = ["ExtraApi", "make_api"]
