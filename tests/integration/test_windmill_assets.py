"""The shipped Windmill assets (deploy/windmill): they parse, their metadata matches their code,
and the scripts run under the local runner."""

from __future__ import annotations

import ast
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def test_planner_dispatch_posts_each_pull_to_the_control_plane_as_one_source(
        local: LocalDispatcher, monkeypatch: pytest.MonkeyPatch, database_url: str,
        tmp_path: Path) -> None:
    from planfleet.api import create_app
    from planfleet.config import Config
    from planfleet.runtime import open_runtime

    yt = FakeYouTrack([
        issue("SAM-1", "Schema", minutes=60),
        issue("SAM-2", "Login", minutes=30, depends_on=("SAM-1",)),
        issue("SAM-3", "Docs", minutes=20),
    ])
    rt = open_runtime(Config(database_url=database_url, api_token="api-secret",
                             state_dir=tmp_path / "state"))
    rt.store.settings.update(auto_plan=False)
    server = _serve(create_app(rt))
    # YouTrack's and the control plane's places and tokens are the fleet's configuration
    monkeypatch.setenv("YOUTRACK_URL", yt.url)
    monkeypatch.setenv("YOUTRACK_TOKEN", yt.token)
    monkeypatch.setenv("PLANFLEET_API_URL", server.url)
    monkeypatch.setenv("PLANFLEET_API_TOKEN", "api-secret")
    try:
        results = []
        for _ in range(2):
            job = uuid.uuid4()
            local.submit(job, "f/planner/planner_dispatch", {"project": "SAM"}, 120)
            st = wait_done(local, job, timeout=60)
            assert st.state is JobState.SUCCESS, st.error
            results.append(st.result)
            yt.issues[2]["resolved"] = 1700000000000  # Docs is resolved before the next pull
    finally:
        server.stop()
        yt.close()
        rt.close()
    # each pull is a version of the one source youtrack:SAM (nothing planned or dispatched by
    # the script itself: the fleet does that, revising the source's plan)
    first, second = results
    assert first["issues"] == 3 and first["outcome"] == "recorded"
    assert second["issues"] == 2 and second["outcome"] == "recorded"
    assert first["source"] == second["source"] == "youtrack:SAM"
    assert second["input_id"] != first["input_id"]


def test_planner_dispatch_takes_no_url_from_its_args_and_quotes_no_body(
        local: LocalDispatcher, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the fleet's YouTrack configured (with a token it refuses, to see an error)
    yt = FakeYouTrack([issue("SAM-1", "Schema", minutes=60)], token="perm:right")
    monkeypatch.setenv("YOUTRACK_URL", yt.url)
    monkeypatch.setenv("YOUTRACK_TOKEN", "perm:wrong")
    monkeypatch.setenv("PLANFLEET_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PLANFLEET_API_TOKEN", "x")
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


class _Server:
    def __init__(self, app: Any) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                     log_config=None, access_log=False))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def _serve(app: Any) -> _Server:
    return _Server(app)


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
