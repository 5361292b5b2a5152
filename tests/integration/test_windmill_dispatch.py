"""The Windmill dispatcher against the loopback Windmill (real HTTP), requests checked against
Windmill's OpenAPI spec by the ``windmill`` fixture."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from planfleet.dispatch import DispatchError, JobState, JobStatus, Submission
from planfleet.dispatch import windmill as windmill_dispatch
from planfleet.dispatch.windmill import WindmillDispatcher
from planfleet.dispatch.windmill_api import WindmillClient
from tests.conftest import wait_for
from tests.support.fake_windmill import FakeWindmill


def make(fake: FakeWindmill, *, token: str | None = None, workspace: str | None = None,
         **kw: Any) -> WindmillDispatcher:
    client = WindmillClient(fake.url, token or fake.token, workspace or fake.workspace,
                            timeout=5)
    opts: dict[str, Any] = {"poll": 0.05, "check_after": 5.0, "retry_base": 0.1, **kw}
    return WindmillDispatcher(client, **opts)


@pytest.fixture
def dispatcher(windmill: FakeWindmill) -> Iterator[WindmillDispatcher]:
    d = make(windmill)
    yield d
    d.close()


def wait_done(d: WindmillDispatcher, ids: list[uuid.UUID], timeout: float = 10,
              on_unknown: Callable[[uuid.UUID], None] | None = None) -> dict[uuid.UUID, JobStatus]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = d.status(ids)
        for job_id, st in out.items():
            if st.state is JobState.UNKNOWN and on_unknown is not None:
                on_unknown(job_id)
        if all(s.done for s in out.values()):
            return out
        time.sleep(0.02)
    raise AssertionError(f"jobs not done: {d.status(ids)}")


def test_a_job_runs_and_its_result_duration_and_link_are_reported(
        windmill: FakeWindmill, dispatcher: WindmillDispatcher) -> None:
    job = uuid.uuid4()
    dispatcher.submit(job, "f/test/work", {"task_id": "a", "sleep": 0.2}, 60)
    st = wait_done(dispatcher, [job])[job]
    assert st.state is JobState.SUCCESS
    assert st.result["task_id"] == "a" and st.result["args"]["sleep"] == 0.2
    assert st.duration is not None and 0.15 <= st.duration < 5
    assert st.link == f"{windmill.url}/run/{job}?workspace=planfleet"
    assert windmill.jobs[str(job)].id == str(job)  # our id, not one Windmill chose


def test_a_failed_job_reports_windmills_error(
        windmill: FakeWindmill, dispatcher: WindmillDispatcher) -> None:
    job = uuid.uuid4()
    dispatcher.submit(job, "f/test/work", {"task_id": "bad", "fail": True}, 60)
    st = wait_done(dispatcher, [job])[job]
    assert st.state is JobState.FAILURE
    assert st.error == "Exception: bad failed (run 1)"


def test_submitting_an_id_twice_starts_one_job(
        windmill: FakeWindmill, dispatcher: WindmillDispatcher) -> None:
    job = uuid.uuid4()
    dispatcher.submit(job, "f/test/work", {"task_id": "t"}, 60)
    dispatcher.submit(job, "f/test/work", {"task_id": "t"}, 60)  # 400 already exists: fine
    wait_done(dispatcher, [job])
    assert windmill.count("POST", "/jobs/run/p/") == 2
    assert [r.status for r in windmill.requests if "/jobs/run/p/" in r.path] == [201, 400]
    assert windmill.runs_of("t") == 1


def test_a_lost_response_is_resent_under_the_same_id(
        windmill: FakeWindmill, dispatcher: WindmillDispatcher) -> None:
    windmill.drop_next(1)  # the job is created, the answer never arrives
    job = uuid.uuid4()
    with pytest.raises(DispatchError) as err:
        dispatcher.submit(job, "f/test/work", {"task_id": "lost"}, 60)
    assert not err.value.permanent
    resent: list[uuid.UUID] = []

    def resubmit(job_id: uuid.UUID) -> None:
        resent.append(job_id)
        dispatcher.submit(job_id, "f/test/work", {"task_id": "lost"}, 60)

    st = wait_done(dispatcher, [job], on_unknown=resubmit)[job]
    assert st.state is JobState.SUCCESS and resent == [job]
    assert windmill.runs_of("lost") == 1 and len(windmill.jobs) == 1


def test_an_id_never_submitted_is_unknown_then_runs_once(
        windmill: FakeWindmill, dispatcher: WindmillDispatcher) -> None:
    # what a worker killed between writing the id and sending the request leaves behind
    job = uuid.uuid4()
    assert dispatcher.status([job])[job].state is JobState.UNKNOWN
    assert windmill.count("GET", f"/jobs_u/get/{job}") == 1
    dispatcher.submit(job, "f/test/work", {"task_id": "late"}, 60)
    assert wait_done(dispatcher, [job])[job].state is JobState.SUCCESS
    assert windmill.runs_of("late") == 1


def test_jobs_submitted_by_an_earlier_worker_are_adopted(windmill: FakeWindmill) -> None:
    first = make(windmill)
    jobs = [uuid.uuid4() for _ in range(3)]
    first.submit_many([Submission(j, "f/test/work", {"task_id": f"x{i}"}, 60)
                       for i, j in enumerate(jobs)])
    first.close()  # the worker dies; a new one tracks the same ids
    second = make(windmill)
    try:
        out = wait_done(second, jobs)
    finally:
        second.close()
    assert all(s.state is JobState.SUCCESS for s in out.values())
    assert len(windmill.executions) == 3


def test_jobs_another_worker_submits_are_followed_by_the_listings(
        windmill: FakeWindmill) -> None:
    # the tracker's dispatcher has looked once (at a job of its own) ...
    tracker, peer = make(windmill, check_after=30.0), make(windmill, check_after=30.0)
    try:
        own = uuid.uuid4()
        tracker.submit(own, "f/test/work", {"task_id": "own"}, 60)
        wait_done(tracker, [own])
        # ... when another worker submits jobs it then follows
        jobs = [uuid.uuid4() for _ in range(20)]
        peer.submit_many([Submission(j, "f/test/work", {"task_id": f"p{i}", "sleep": 0.2}, 60)
                          for i, j in enumerate(jobs)])
        out = wait_done(tracker, jobs)
    finally:
        tracker.close()
        peer.close()
    assert all(s.state is JobState.SUCCESS for s in out.values())
    # each is fetched once, after the listing saw it complete: none looked up on sight
    assert all(windmill.count("GET", f"/jobs_u/get/{j}") == 1 for j in jobs)


def test_jobs_that_run_quietly_are_looked_at_less_often(windmill: FakeWindmill) -> None:
    dispatcher = make(windmill, poll=0.05, check_after=30.0)
    jobs = [uuid.uuid4() for _ in range(2)]
    try:
        dispatcher.submit_many([Submission(j, "f/test/work", {"task_id": f"q{i}", "sleep": 2.5},
                                           60) for i, j in enumerate(jobs)])
        out = wait_done(dispatcher, jobs, timeout=15)
    finally:
        dispatcher.close()
    assert all(s.state is JobState.SUCCESS for s in out.values())
    # a look every 0.05 s would be 50 listings of completions; the waits grow to QUIET_CAP
    listings = windmill.count("GET", "/jobs/list_filtered_uuids")
    assert listings <= 15, listings


@pytest.mark.parametrize("change, status", [
    ({"token": "wrong"}, 401), ({"workspace": "elsewhere"}, 404), ({"script": "f/test/nope"}, 404)])
def test_misconfiguration_fails_at_once_naming_script_and_status(
        windmill: FakeWindmill, change: dict[str, str], status: int) -> None:
    d = make(windmill, token=change.get("token"), workspace=change.get("workspace"))
    script = change.get("script", "f/test/work")
    try:
        with pytest.raises(DispatchError) as err:
            d.submit(uuid.uuid4(), script, {"task_id": "a"}, 60)
    finally:
        d.close()
    assert err.value.permanent and err.value.misconfigured
    assert f"Windmill answered {status}" in str(err.value)
    assert f"script {script}" in str(err.value)
    assert windmill.count("POST", "/jobs/run/p/") == 1  # no retry
    assert windmill.executions == []


def test_server_errors_are_retried_with_backoff(
        windmill: FakeWindmill, dispatcher: WindmillDispatcher) -> None:
    windmill.fail_next(3, 503, when=lambda r: "/jobs/run/p/" in r.path)
    job = uuid.uuid4()
    with pytest.raises(DispatchError) as err:
        dispatcher.submit(job, "f/test/work", {"task_id": "flaky"}, 60)
    assert not err.value.permanent and "503" in str(err.value)
    # queued until the backoff is over, then unknown: the caller submits again
    assert dispatcher.status([job])[job].state is JobState.QUEUED
    resubmits: list[float] = []

    def resubmit(job_id: uuid.UUID) -> None:
        resubmits.append(time.monotonic())
        try:
            dispatcher.submit(job_id, "f/test/work", {"task_id": "flaky"}, 60)
        except DispatchError:
            pass

    assert wait_done(dispatcher, [job], on_unknown=resubmit)[job].state is JobState.SUCCESS
    assert len(resubmits) == 3
    gaps = [b - a for a, b in zip(resubmits, resubmits[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.5  # the delay doubles
    assert windmill.runs_of("flaky") == 1


def test_server_down_then_back(windmill: FakeWindmill, dispatcher: WindmillDispatcher) -> None:
    windmill.stop()
    job = uuid.uuid4()
    with pytest.raises(DispatchError) as err:
        dispatcher.submit(job, "f/test/work", {"task_id": "down"}, 60)
    assert "cannot reach Windmill" in str(err.value) and not err.value.permanent
    windmill.start()

    def resubmit(job_id: uuid.UUID) -> None:
        dispatcher.submit(job_id, "f/test/work", {"task_id": "down"}, 60)

    assert wait_done(dispatcher, [job], on_unknown=resubmit)[job].state is JobState.SUCCESS


def test_cancel_stops_a_queued_or_running_job(
        windmill: FakeWindmill, dispatcher: WindmillDispatcher) -> None:
    job = uuid.uuid4()
    dispatcher.submit(job, "f/test/work", {"task_id": "slow", "sleep": 5}, 60)
    dispatcher.cancel(job, "plan cancelled")
    st = wait_done(dispatcher, [job])[job]
    assert st.state is JobState.FAILURE and "plan cancelled" in (st.error or "")
    dispatcher.cancel(job, "again")  # finished: nothing to cancel, no error


def test_a_zombie_restart_runs_the_script_twice_under_one_job(
        windmill: FakeWindmill, dispatcher: WindmillDispatcher) -> None:
    job = uuid.uuid4()
    dispatcher.submit(job, "f/test/work", {"task_id": "z", "zombie": True}, 60)
    st = wait_done(dispatcher, [job])[job]
    assert st.state is JobState.SUCCESS and windmill.runs_of("z") == 2
    assert len(windmill.jobs) == 1


def test_many_jobs_are_tracked_with_few_requests(windmill: FakeWindmill) -> None:
    # the worker's defaults: a look every 0.5 s, single lookups only after 30 s
    dispatcher = make(windmill, poll=0.5, check_after=30.0)
    jobs = [uuid.uuid4() for _ in range(60)]
    errors = dispatcher.submit_many([
        Submission(j, "f/test/work", {"task_id": f"m{i}", "sleep": 0.3 + (i % 5) * 0.2}, 60)
        for i, j in enumerate(jobs)])
    assert not any(errors.values())
    try:
        out = wait_done(dispatcher, jobs, timeout=30)
    finally:
        dispatcher.close()
    assert all(s.state is JobState.SUCCESS for s in out.values())
    status_requests = sum(v for k, v in dispatcher.client.requests.items()
                          if k in ("get_job", "list", "result_maybe", "clock"))
    assert status_requests / len(jobs) <= 2, dispatcher.client.requests


def test_the_running_listing_reaches_back_only_to_the_oldest_job_not_seen_running(
        windmill: FakeWindmill, dispatcher: WindmillDispatcher,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(windmill_dispatch, "OVERLAP", 0.2)  # the margin for late commits
    # Given a long job seen running
    old = uuid.uuid4()
    dispatcher.submit(old, "f/test/work", {"task_id": "old", "sleep": 3}, 60)
    wait_for(lambda: dispatcher.status([old])[old].state is JobState.RUNNING, timeout=10)
    wait_for(lambda: windmill_dispatch.OVERLAP < time.time() - windmill.jobs[str(old)]
             .started_at.timestamp(), timeout=5)
    # When another is submitted and seen running too
    new = uuid.uuid4()
    dispatcher.submit(new, "f/test/work", {"task_id": "new", "sleep": 3}, 60)
    wait_for(lambda: dispatcher.status([old, new])[new].state is JobState.RUNNING, timeout=10)
    # Then the listing that found it asked only for jobs started after the first one did
    (started,) = [j.started_at for j in windmill.jobs.values() if j.id == str(old)]
    listings = [r for r in windmill.requests
                if r.path.endswith("/jobs/list_filtered_uuids") and "running" in r.query]
    last = dt.datetime.fromisoformat(listings[-1].query["started_after"][0])
    assert started is not None and last > started
    assert dispatcher.status([old, new])[old].state is JobState.RUNNING  # still known to run


@pytest.mark.parametrize("status", [404, 501])
def test_an_older_windmill_without_listings_is_followed_job_by_job(status: int) -> None:
    # Given a Windmill whose listing endpoints and db clock answer 404 (or 501)
    old = FakeWindmill(scripts={"f/test/work"}, listing=status)
    dispatcher = make(old, poll=0.05, check_after=30.0)
    try:
        jobs = [uuid.uuid4() for _ in range(10)]
        errors = dispatcher.submit_many([
            Submission(j, "f/test/work", {"task_id": f"o{i}", "sleep": 1.5}, 60)
            for i, j in enumerate(jobs)])
        assert not any(errors.values())
        # Then every job's end is still seen, the listing is not asked again and again, and
        # each job is looked up at a modest rate (doubling intervals from a second)
        out = wait_done(dispatcher, jobs, timeout=30)
    finally:
        dispatcher.close()
        old.close()
    assert all(s.state is JobState.SUCCESS for s in out.values())
    assert dispatcher.client.requests.get("list", 0) + dispatcher.client.requests.get(
        "clock", 0) <= 1
    assert dispatcher.client.requests["get_job"] / len(jobs) <= 3, dispatcher.client.requests
