"""Schemathesis against the service's own OpenAPI, on a real server: no 5xx, schema kept.

Bounded: a few seeded (derandomised) examples per operation, 127.0.0.1 only, SQLite backend.
"""

from __future__ import annotations

import uuid

import pytest
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, given, settings

from tests.service.conftest import Server

pytestmark = pytest.mark.slow

CHECKS = [c for c in schemathesis.checks.CHECKS.get_all() if c.__name__ in {
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "response_headers_conformance"}]


def test_openapi(server: Server) -> None:
    if "postgresql" in server.db_url:
        pytest.skip("the OpenAPI run is bounded to one backend (SQLite)")
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 12
    for op in ops:
        _fuzz(op, server)


def _fuzz(op, server: Server) -> None:  # type: ignore[no-untyped-def]
    role = "admin" if op.path == "/v1/keys" else (
        "operator" if op.method.upper() == "POST" else "risk")

    @given(case=op.as_strategy())
    @settings(max_examples=12, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck), database=None)
    def run(case) -> None:  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {server.keys[role]}",
                   "Idempotency-Key": uuid.uuid4().hex}
        # schema-valid bodies may still be refused for what they mean (unknown account, margin
        # check): 422 is an answer, so positive_data_acceptance is not among the checks
        case.call_and_validate(headers=headers, base_url=server.url, checks=CHECKS)

    run()
