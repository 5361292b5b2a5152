"""Schemathesis over the API's own OpenAPI schema: whatever a client sends, no server error,
and every answer matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from planfleet.api import create_app
from planfleet.config import Config
from planfleet.runtime import Runtime, open_runtime

TOKEN = "fuzz-token"


@pytest.fixture
def fuzz_runtime(database_url: str, redis_url: str) -> Iterator[Runtime]:
    rt = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token=TOKEN))
    # something to find: an input, its plan
    from planfleet import actions
    from planfleet.workers import planning

    out = actions.upload(rt, "t.yaml", b"tasks: [{id: A}, {id: B, depends_on: [A]}]")
    planning.plan_input(rt, out.input_id, "job-1")
    yield rt
    rt.close()


def test_no_server_errors(fuzz_runtime: Runtime) -> None:
    app = create_app(fuzz_runtime, dashboard=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    for op in operations:

        @hypothesis.given(case=op.as_strategy())
        @hypothesis.settings(max_examples=25, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def run(case: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance,
                                           content_type_conformance,
                                           response_schema_conformance])

        run()
