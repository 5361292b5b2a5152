"""The shipped Windmill assets (deploy/windmill): they parse, their metadata matches their code,
and the scripts run under the local runner."""

from __future__ import annotations

import ast
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from planfleet.config import SHIPPED_SCRIPTS
from planfleet.dispatch import JobState, JobStatus
from planfleet.dispatch.local import LocalDispatcher
from tests.support.fake_youtrack import FakeYouTrack, issue

ASSETS = SHIPPED_SCRIPTS


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalDispatcher]:
    d = LocalDispatcher(ASSETS, tmp_path / "jobs")
    yield d
    d.close()


def wait_done(d: LocalDispatcher, job: uuid.UUID, timeout: float = 30) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = d.status([job])[job]
        if st.done:
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish")


def _main_params(script: Path) -> dict[str, bool]:
    """main's parameters: name -> has a default."""
    tree = ast.parse(script.read_text())
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    names = [a.arg for a in main.args.args]
    with_default = set(names[len(names) - len(main.args.defaults):])
    return {n: n in with_default for n in names}


def test_every_script_has_metadata_matching_its_main() -> None:
    scripts = sorted(ASSETS.glob("f/**/*.py"))
    assert {s.stem for s in scripts} == {"solver_dispatch", "planner_dispatch", "run_quality"}
    for script in scripts:
        meta = yaml.safe_load(script.with_suffix(".script.yaml").read_text())
        schema = meta["schema"]
        params = _main_params(script)
        assert set(schema["properties"]) == set(params), script
        assert set(schema["required"]) == {n for n, d in params.items() if not d}, script
        assert meta["kind"] == "script" and meta["summary"]


def test_wmill_yaml_and_the_schedule_parse_and_point_at_real_scripts() -> None:
    conf = yaml.safe_load((ASSETS / "wmill.yaml").read_text())
    assert "f/planner/**" in conf["includes"] and conf["includeSchedules"] is True
    (sched_file,) = ASSETS.glob("f/**/*.schedule.yaml")
    sched = yaml.safe_load(sched_file.read_text())
    assert sched["schedule"] == "0 */15 * * * *"  # Windmill's six-field cron: every 15 min
    assert (ASSETS / f"{sched['script_path']}.py").exists() and sched["is_flow"] is False
    params = _main_params(ASSETS / f"{sched['script_path']}.py")
    assert set(sched["args"]) <= set(params)


def test_solver_dispatch_runs_and_is_idempotent(local: LocalDispatcher) -> None:
    results = []
    for _ in range(2):  # the same task twice, as after a zombie restart
        job = uuid.uuid4()
        local.submit(job, "f/planner/solver_dispatch",
                     {"task_id": "SAM-1", "title": "Login", "plan_id": 7, "solver": "jules",
                      "unknown_arg": 1}, 60)
        st = wait_done(local, job)
        assert st.state is JobState.SUCCESS, st.error
        results.append(st.result)
    assert results[0] == results[1] == {
        "status": "ok", "task_id": "SAM-1", "plan_id": 7, "solver": "jules",
        "issue_id": "SAM-1", "summary": "dispatched SAM-1: Login"}


def test_planner_dispatch_plans_youtrack_and_starts_the_immediate_batch(
        local: LocalDispatcher, monkeypatch: pytest.MonkeyPatch) -> None:
    yt = FakeYouTrack([
        issue("SAM-1", "Schema", minutes=60),
        issue("SAM-2", "Login", minutes=30, depends_on=("SAM-1",)),
        issue("SAM-3", "Docs", minutes=20),
        issue("SAM-4", "Icons", minutes=10),
        issue("SAM-5", "Review", minutes=5, depends_on=("SAM-2", "SAM-3")),
    ])
    # YouTrack's place and token are the fleet's configuration (here: the environment)
    monkeypatch.setenv("YOUTRACK_URL", yt.url)
    monkeypatch.setenv("YOUTRACK_TOKEN", yt.token)
    try:
        job = uuid.uuid4()
        local.submit(job, "f/planner/planner_dispatch", {"project": "SAM", "max_parallel": 2},
                     120)
        st = wait_done(local, job, timeout=60)
    finally:
        yt.close()
    assert st.state is JobState.SUCCESS, st.error
    out = st.result
    started = [d["task_id"] for d in out["dispatched"]]
    # two slots: the critical path's head first, then the longest other ready task
    assert started == ["SAM-1", "SAM-3"]
    assert set(out["deferred"]) == {"SAM-2", "SAM-4", "SAM-5"} and out["issues"] == 5
    # the dispatched jobs are real local jobs of the solver script, and they ran
    for d in out["dispatched"]:
        sub = wait_done(local, uuid.UUID(d["job_id"]))
        assert sub.state is JobState.SUCCESS and sub.result["task_id"] == d["task_id"]


def test_planner_dispatch_takes_no_url_from_its_args_and_quotes_no_body(
        local: LocalDispatcher, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the fleet's YouTrack configured (with a token it refuses, to see an error)
    yt = FakeYouTrack([issue("SAM-1", "Schema", minutes=60)], token="perm:right")
    monkeypatch.setenv("YOUTRACK_URL", yt.url)
    monkeypatch.setenv("YOUTRACK_TOKEN", "perm:wrong")
    try:
        # When a task file names the script with a URL and token of its choosing
        job = uuid.uuid4()
        local.submit(job, "f/planner/planner_dispatch", {
            "youtrack_url": "http://127.0.0.1:9/internal", "youtrack_token": "x",
            "project": "SAM"}, 60)
        st = wait_done(local, job, timeout=60)
    finally:
        yt.close()
    # Then the configured YouTrack was asked (its 401), not the task file's URL
    assert st.state is JobState.FAILURE
    error = st.error or ""
    assert "refused the token (401): Unauthorized" in error, error
    assert "127.0.0.1:9" not in error
    # and the error quotes the status line, not the body YouTrack sent
    assert "You are not logged in" not in error


def test_planner_dispatch_without_configuration_says_what_to_set(
        local: LocalDispatcher, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YOUTRACK_URL", raising=False)
    monkeypatch.delenv("YOUTRACK_TOKEN", raising=False)
    job = uuid.uuid4()
    local.submit(job, "f/planner/planner_dispatch", {"project": "SAM"}, 60)
    st = wait_done(local, job, timeout=60)
    assert st.state is JobState.FAILURE
    assert "YOUTRACK_URL is not configured" in (st.error or "")
    assert "f/planner/youtrack_url" in (st.error or "")
