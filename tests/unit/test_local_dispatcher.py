"""The local runner behaves like Windmill's job API: our ids, idempotent submit, status, cancel."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest

from planfleet.dispatch import DispatchError, JobState, JobStatus
from planfleet.dispatch.local import LocalDispatcher
from planfleet.workers import retry

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def local(tmp_path: Path) -> LocalDispatcher:
    d = LocalDispatcher(SCRIPTS, tmp_path / "jobs")
    yield d
    d.close()


def wait_done(d: LocalDispatcher, job: uuid.UUID, timeout: float = 15) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = d.status([job])[job]
        if st.done:
            return st
        time.sleep(0.02)
    raise AssertionError("job did not finish")


def test_runs_main_with_the_args_it_accepts(local: LocalDispatcher) -> None:
    job = uuid.uuid4()
    local.submit(job, "f/unit/echo", {"x": 21, "task_id": "ignored"}, timeout=30)
    st = wait_done(local, job)
    assert st.state is JobState.SUCCESS and st.result == {"x": 42}
    assert st.duration is not None and st.link and Path(st.link).exists()


def test_submitting_an_id_twice_runs_it_once(local: LocalDispatcher, tmp_path: Path) -> None:
    job = uuid.uuid4()
    local.submit(job, "f/unit/echo", {"x": 1}, timeout=30)
    local.submit(job, "f/unit/echo", {"x": 2}, timeout=30)
    assert wait_done(local, job).result == {"x": 2 * 1}
    # a second dispatcher (a restarted worker) sees the same job and does not run it again
    other = LocalDispatcher(SCRIPTS, tmp_path / "jobs")
    other.submit(job, "f/unit/echo", {"x": 3}, timeout=30)
    assert other.status([job])[job].result == {"x": 2}


def test_unknown_ids_are_unknown(local: LocalDispatcher) -> None:
    job = uuid.uuid4()
    assert local.status([job])[job].state is JobState.UNKNOWN


def test_failures_timeouts_and_bad_scripts(local: LocalDispatcher) -> None:
    boom, slow, nomain = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    local.submit(boom, "f/unit/boom", {}, timeout=30)
    local.submit(slow, "f/unit/echo", {"x": 1, "sleep": 5}, timeout=0.3)
    local.submit(nomain, "f/unit/nomain", {}, timeout=30)
    st = wait_done(local, boom)
    assert st.state is JobState.FAILURE and st.error == "ValueError: boom"
    assert "timed out after 0.3 s" in (wait_done(local, slow).error or "")
    assert "has no main function" in (wait_done(local, nomain).error or "")
    with pytest.raises(DispatchError) as info:
        local.submit(uuid.uuid4(), "f/unit/missing", {}, timeout=30)
    assert info.value.permanent and "f/unit/missing not found" in str(info.value)
    with pytest.raises(DispatchError):
        local.submit(uuid.uuid4(), "../../etc/passwd", {}, timeout=30)


def test_cancel_stops_a_running_job(local: LocalDispatcher) -> None:
    job = uuid.uuid4()
    local.submit(job, "f/unit/echo", {"x": 1, "sleep": 30}, timeout=60)
    deadline = time.monotonic() + 10
    while local.status([job])[job].state is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    local.cancel(job, "plan cancelled")
    st = wait_done(local, job)
    assert st.state is JobState.FAILURE and st.error == "cancelled: plan cancelled"
    assert time.monotonic() - started < 5


def test_retry_policy_backs_off_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    delays = [retry.decide(t, max_attempts=10, base=30, cap=3600, rng=rng).delay
              for t in range(1, 10)]
    for tries, d in enumerate(delays, start=1):
        nominal = min(3600, 30 * 2 ** (tries - 1))
        assert 0.8 * nominal <= d <= 1.2 * nominal
    assert retry.decide(3, max_attempts=3, base=30, cap=3600) == retry.Decision(retry=False)


@pytest.mark.parametrize("script", ["f/unit/" + "e" * 5000, "f/unit/../../../etc/passwd",
                                    "f/unit/echo\u0000"])
def test_a_script_path_outside_the_grammar_fails_at_once(local: LocalDispatcher,
                                                         script: str) -> None:
    # a 5,000-character name raised ENAMETOOLONG out of submit; now a permanent, clear refusal
    with pytest.raises(DispatchError) as info:
        local.submit(uuid.uuid4(), script, {}, 10)
    assert info.value.permanent and "script path" in str(info.value)
