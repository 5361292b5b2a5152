"""Planning untrusted task files on real Postgres: nothing stays `planning` for ever, every
refusal names its field, and the fleet's limits and allow-list hold."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from planfleet import models, planner
from planfleet.workers import planning
from tests.integration.conftest import Fleet


def submit(fleet: Fleet, doc: dict[str, Any]) -> int:
    return fleet.submit(json.dumps(doc).encode(), f"in-{len(json.dumps(doc))}.json", queue=False)


def plan(fleet: Fleet, doc: dict[str, Any], job: str = "job-1") -> tuple[int, int | None]:
    input_id = submit(fleet, doc)
    fleet.store.inputs.queue(input_id)
    return input_id, planning.plan_input(fleet.rt, input_id, job)


def failed_with(fleet: Fleet, input_id: int) -> str:
    row = fleet.store.inputs.get(input_id)
    assert row.status is models.InputStatus.FAILED, row
    return row.error or ""


def test_a_nul_in_a_title_fails_the_input_with_the_field_named(fleet: Fleet) -> None:
    # Given a task whose title holds a NUL character (Postgres cannot store it)
    input_id, plan_id = plan(fleet, {"tasks": [{"id": "A", "title": "a\u0000b"}]})
    # Then planning fails it at once, naming the field, instead of leaving it `planning`
    assert plan_id is None
    error = failed_with(fleet, input_id)
    assert "field title" in error and "NUL" in error


def test_a_script_name_of_5000_characters_fails_the_input(fleet: Fleet) -> None:
    input_id, plan_id = plan(fleet, {"tasks": [{"id": "A", "script": "f/x/" + "a" * 5000},
                                               {"id": "B"}]})
    assert plan_id is None
    assert "5004 characters long" in failed_with(fleet, input_id)


def test_script_paths_that_climb_out_fail_the_input(fleet: Fleet) -> None:
    doc = {"qa": "f/../../variables/create",
           "solvers": {"s": {"script": "u/x/../../../scripts/create"}},
           "tasks": [{"id": "A", "script": "f/a/../../../../../etc", "solver": "s"}]}
    input_id, plan_id = plan(fleet, doc)
    assert plan_id is None
    error = failed_with(fleet, input_id)
    assert "field qa" in error and "field solvers.s.script" in error
    assert "task A, field script" in error


def test_a_script_outside_the_allow_list_fails_the_input(fleet: Fleet) -> None:
    # Given the default allow-list (the scripts folder: tests/scripts)
    input_id, plan_id = plan(fleet, {"tasks": [{"id": "A", "script": "f/private/secret"}]})
    assert plan_id is None
    assert "'f/private/secret' is not allowed" in failed_with(fleet, input_id)
    # a script of the folder plans
    _, ok = plan(fleet, {"tasks": [{"id": "B", "script": "f/test/work"}]})
    assert ok is not None
    # and so does the script of a solver the fleet declares
    fleet.store.fleet.set_solver("agents", 2, "f/agents/run")
    _, ok = plan(fleet, {"tasks": [{"id": "C", "script": "f/agents/run"}]})
    assert ok is not None


def test_max_parallel_and_timeout_over_the_fleet_limits_fail_the_input(fleet: Fleet) -> None:
    doc = {"max_parallel": 150, "tasks": [{"id": f"T{i}", "script": "f/test/work",
                                           "timeout": 1e9 if i == 0 else 60}
                                          for i in range(150)]}
    input_id, plan_id = plan(fleet, doc)
    assert plan_id is None
    error = failed_with(fleet, input_id)
    assert "max_parallel 150 is over the fleet's limit of 64" in error
    assert "task T0, field timeout" in error


def test_the_settings_max_parallel_is_clamped_to_the_fleet_limit(fleet: Fleet) -> None:
    fleet.store.settings.update(max_parallel=1000)
    _, plan_id = plan(fleet, {"tasks": [{"id": f"T{i}", "script": "f/test/work"}
                                        for i in range(100)]})
    assert plan_id is not None
    assert fleet.store.plans.get(plan_id).summary["max_parallel"] == 64


def test_an_unexpected_error_fails_the_input_after_a_few_attempts(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a planner that raises something nobody expected
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom: no way to plan this")

    monkeypatch.setattr(planner, "plan", boom)
    input_id = submit(fleet, {"tasks": [{"id": "A"}]})
    fleet.store.inputs.queue(input_id)
    # When RQ runs the job again after each failure (the same job may claim again)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            planning.plan_input(fleet.rt, input_id, "job-1")
        assert fleet.store.inputs.get(input_id).status is models.InputStatus.PLANNING
    # Then the third attempt fails the input with the error's message, and nothing loops
    assert planning.plan_input(fleet.rt, input_id, "job-1") is None
    error = failed_with(fleet, input_id)
    assert "RuntimeError: boom: no way to plan this" in error and "3 times" in error
    assert planning.plan_input(fleet.rt, input_id, "job-1") is None  # nothing to claim
    events = fleet.store.events.list(input_id=input_id, kind="plan_failed")
    assert events and "boom" in events[0].message
    # and a person may plan it again: its attempts start from zero
    monkeypatch.undo()
    fleet.store.inputs.replan(input_id)
    assert planning.plan_input(fleet.rt, input_id, "job-2") is not None


def test_an_input_whose_worker_dies_every_time_is_failed(fleet: Fleet, database_url: str) -> None:
    # Given an input that was claimed 9 times and never finished (its worker killed each time)
    input_id = submit(fleet, {"tasks": [{"id": "A"}]})
    fleet.store.inputs.queue(input_id)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE pending_inputs SET attempts = 9 WHERE id = %s", (input_id,))
    # When it is claimed once more, Then it is failed with what happened
    assert planning.plan_input(fleet.rt, input_id, "job-10") is None
    assert "started 9 times without finishing" in failed_with(fleet, input_id)


def test_the_decide_url_of_a_task_id_with_slashes_stays_on_its_plan(
    fleet: Fleet, database_url: str, redis_url: str
) -> None:
    # Given a stored plan (from before ids with '/' were refused) whose blocked step's id
    # would climb to another plan's step
    from fastapi.testclient import TestClient

    from planfleet.api import create_app
    from planfleet.config import Config
    from planfleet.runtime import open_runtime

    rt = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token="t"))
    auth = {"Authorization": "Bearer t"}
    fleet.store.settings.update(auto_build=False)
    _, plan_id = plan(fleet, {"tasks": [{"id": "A", "script": "f/test/work"}]})
    assert plan_id is not None
    evil = "z/../../../3/steps/victim"
    rt.store.plans.queue(plan_id)
    assert rt.store.plans.claim(plan_id, "w", 30)
    rt.store.steps.create(plan_id, [{"task_id": evil, "script": "f/test/work", "solver": None,
                                     "args": {}}])
    step = rt.store.steps.latest(plan_id)[evil]
    rt.store.steps.dispatch(step.id, "31111111-2222-3333-4444-555555555555")
    rt.store.steps.finish(step.id, models.StepStatus.BLOCKED, error="stuck")
    expected = f"/api/plans/{plan_id}/steps/z%2F..%2F..%2F..%2F3%2Fsteps%2Fvictim/decide"
    try:
        with TestClient(create_app(rt)) as client:
            page = client.get(f"/plans/{plan_id}", headers=auth).text
            # a click sends exactly that URL: it reaches no other plan's step
            r = client.post(expected, json={"decision": "skip"}, headers=auth)
            assert r.status_code == 404
    finally:
        rt.close()
    # Then the page's decide URL encodes every '/' of the id: it names this plan's step
    assert f'data-url="{expected}"' in page
    assert "steps/z/.." not in page
