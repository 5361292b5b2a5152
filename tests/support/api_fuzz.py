"""Schemathesis over the API's own OpenAPI schema, shared by the suite's test (fixed seed, few
examples) and ``bench/api_fuzz.py`` (random seed, many): whatever a client sends, no server
error, and every answer — each 422 included — matches the schema."""

from __future__ import annotations

from typing import Any

import hypothesis
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from planfleet.api import create_app
from planfleet.runtime import Runtime

#: a seed that once found a 422 outside the schema (a NUL in watch_dir)
SEED = 132467940547365280046819177230620833347


def seed_runtime(rt: Runtime) -> None:
    """Something to find: an input and its plan."""
    from planfleet import actions
    from planfleet.workers import planning

    out = actions.upload(rt, "t.yaml", b"tasks: [{id: A}, {id: B, depends_on: [A]}]")
    planning.plan_input(rt, out.input_id, "job-1")


def fuzz(rt: Runtime, token: str, *, examples: int, seed: int | None) -> int:
    """Run every operation ``examples`` times; return how many operations ran. Raises the
    first failure (hypothesis shrinks it and prints the seed that reproduces it)."""
    app = create_app(rt, dashboard=False)
    auth = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    for op in operations:

        @hypothesis.given(case=op.as_strategy())
        @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def run(case: Any) -> None:
            case.headers = {**(case.headers or {}), **auth}
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance,
                                           content_type_conformance,
                                           response_schema_conformance])

        if seed is not None:
            run = hypothesis.seed(seed)(run)
        run()
    return len(operations)
