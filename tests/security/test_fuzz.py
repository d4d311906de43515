"""Fuzz every operation of the live API from its own OpenAPI schema (schemathesis): no 5xx, no
status code, content type, header or body outside what the schema declares. Bounded: at most 30
examples per operation, no per-example deadline (a busy 2-core machine), well under a minute."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.conftest import LiveService

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
MAX_EXAMPLES = 30


def test_api_conforms_to_its_schema(live: LiveService) -> None:
    # (schemathesis.pytest.from_fixture does not run under pytest 9: each operation is driven here)
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/upscale", "GET /v1/jobs/{job_id}", "GET /v1/jobs/{job_id}/result",
            "DELETE /v1/jobs/{job_id}", "GET /v1/models", "GET /readyz", "GET /healthz"} <= labels
    calls: dict[str, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        def fuzz(case: schemathesis.Case) -> None:
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            case.call_and_validate(base_url=live.base_url, checks=CHECKS, timeout=30)

        fuzz()
    print(f"\nschemathesis: {sum(calls.values())} requests, per operation: {calls}")
    assert all(calls.get(label, 0) >= 1 for label in labels), calls
