"""A task's effective step policy, and both build modes reading it from the one place."""

from __future__ import annotations

from planfleet.config import Config
from planfleet.planner import plan_bytes
from planfleet.planner.flow import to_windmill_flow
from planfleet.policy import StepPolicy, effective

FILE = b"""
policy: {max_attempts: 5, retry_base: 10}
tasks:
  - {id: A, timeout: 1d}
  - {id: B, max_attempts: 2, depends_on: [A]}
"""


def test_the_file_then_the_task_override_the_fleet() -> None:
    fleet = StepPolicy(max_attempts=3, retry_base=30, timeout=1800)
    assert effective(fleet, None, None, None) == fleet
    got = effective(fleet, {"max_attempts": 5, "retry_cap": None}, None, 60)
    assert (got.max_attempts, got.retry_base, got.timeout) == (5, 30, 60)
    assert effective(fleet, {"max_attempts": 5}, 2, None).max_attempts == 2


def test_the_flow_export_uses_each_tasks_policy() -> None:
    plan = plan_bytes(FILE, "p.yaml")
    flow = to_windmill_flow(plan, fleet=Config(database_url="postgresql://x/y").step_policy())
    modules = {m["id"]: m for w in flow["value"]["modules"]
               for b in w["value"]["branches"] for m in b["modules"]}
    assert modules["a"]["timeout"]["value"] == 86_400  # a day of wall-clock time
    assert modules["a"]["retry"]["exponential"]["attempts"] == 4  # the file's 5, less the first
    assert modules["a"]["retry"]["exponential"]["seconds"] == 10
    assert modules["b"]["retry"]["exponential"]["attempts"] == 1  # the task's own 2
    assert modules["b"]["timeout"]["value"] == 1800
