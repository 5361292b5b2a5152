"""Plans built by real RQ build workers dispatching to the loopback Windmill over HTTP."""

from __future__ import annotations

import os
import signal

from planfleet import models
from planfleet.processes import children
from tests.conftest import wait_for
from tests.integration.conftest import Fleet
from tests.integration.test_pipeline import diamond, finished, plan_of
from tests.support.fake_windmill import FakeWindmill, Request


def use_windmill(fleet: Fleet, fake: FakeWindmill, **env: str) -> None:
    fleet.env.update({
        "PLANFLEET_DISPATCH": "windmill", "WINDMILL_URL": fake.url,
        "WINDMILL_TOKEN": fake.token, "WINDMILL_WORKSPACE": fake.workspace,
        "PLANFLEET_WINDMILL_POLL": "0.1", "PLANFLEET_WINDMILL_RETRY_BASE": "0.2",
        "PLANFLEET_WINDMILL_RETRY_CAP": "1", **env})


def test_a_plan_is_built_through_windmill(fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill)
    fleet.workers()
    input_id = fleet.submit(fleet.task_file(diamond(0.2), max_parallel=2))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.BUILT, (p.error, fleet.logs())
    steps = fleet.store.steps.latest(p.id)
    # each task ran once, as the Windmill job whose id the step holds, in dependency order
    assert sorted(a["task_id"] for _, _, a in windmill.executions) == list("ABCDEF")
    for task, step in steps.items():
        job = windmill.jobs[str(step.windmill_job_id)]
        assert job.args["task_id"] == task and job.args["plan_id"] == p.id
        assert step.result["link"] == f"{windmill.url}/run/{step.windmill_job_id}?workspace=planfleet"
        assert step.result["value"]["task_id"] == task
        assert step.result["duration"] >= 0.2
    started = {s.task_id: windmill.jobs[str(s.windmill_job_id)].started_at for s in steps.values()}
    ended = {s.task_id: windmill.jobs[str(s.windmill_job_id)].completed_at
             for s in steps.values()}
    for dep in "BCD":
        assert ended["A"] <= started[dep]  # type: ignore[operator]
        assert ended[dep] <= started["E"]  # type: ignore[operator]


def test_failures_retry_through_windmill(fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill)
    fleet.workers()
    input_id = fleet.submit(fleet.task_file(
        [{"id": "A", "args": {"fail_times": 2}}, {"id": "B", "depends_on": ["A"]}]))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.BUILT, p.error
    attempts = [s for s in fleet.store.steps.all(p.id) if s.task_id == "A"]
    assert [s.status for s in attempts] == [models.StepStatus.FAILED] * 2 + [
        models.StepStatus.COMPLETED]
    assert attempts[0].error == "Exception: A failed (run 1)"
    assert len({s.windmill_job_id for s in attempts}) == 3  # a new job id per attempt


def test_a_worker_killed_before_the_answer_starts_no_second_job(
        fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill)
    fleet.worker("plan_queue")
    build = fleet.worker("build_queue")
    killed: list[int] = []

    def kill_the_worker(req: Request) -> None:
        # the job is created; the worker dies before it reads the answer
        if req.status == 201 and "/jobs/run/p/" in req.path and not killed:
            for pid in children(build.pid):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            os.killpg(build.pid, signal.SIGKILL)

    windmill.on_request = kill_the_worker
    tasks = [{"id": f"T{i}", "args": {"sleep": 0.1}} for i in range(4)]
    input_id = fleet.submit(fleet.task_file(tasks, max_parallel=1))
    p = plan_of(fleet, input_id)
    wait_for(lambda: killed, timeout=30)
    build.wait(10)
    fleet.worker("build_queue")  # its tracker follows the job the dead worker created
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT, p.error
    assert sorted(a["task_id"] for _, _, a in windmill.executions) == [f"T{i}" for i in range(4)]
    assert len(windmill.jobs) == 4
    assert len(fleet.store.steps.all(p.id)) == 4


def test_an_id_written_but_never_sent_is_sent_once_by_the_next_worker(
        fleet: Fleet, windmill: FakeWindmill) -> None:
    # Given a plan whose step got its job id written by a worker that died before sending it
    use_windmill(fleet, windmill)
    fleet.worker("plan_queue")
    fleet.store.settings.update(auto_build=False)
    input_id = fleet.submit(fleet.task_file([{"id": "A"}, {"id": "B", "depends_on": ["A"]}]))
    p = wait_for(lambda: (q := plan_of(fleet, input_id)).status
                 is models.PlanStatus.READY_FOR_BUILD and q, timeout=30)
    fleet.store.plans.queue(p.id)
    assert fleet.store.plans.claim(p.id, "dead-worker", 3.0) is not None
    fleet.store.steps.create(p.id, [
        {"task_id": t, "script": "f/test/work", "solver": None,
         "args": {"task_id": t, "plan_id": p.id, "title": t}} for t in "AB"])
    step = fleet.store.steps.latest(p.id)["A"]
    job_id = "0b7f3c1e-1d2a-4c57-9a43-5d0f3e2b1a90"
    assert fleet.store.steps.dispatch(step.id, job_id)
    # When a build worker's tracker looks at the fleet's running steps
    fleet.worker("build_queue")
    p = finished(fleet, p.id)
    # Then the written id was looked up (404), sent once, and nothing ran twice
    assert p.status is models.PlanStatus.BUILT, p.error
    assert windmill.jobs[job_id].args["task_id"] == "A"
    assert windmill.runs_of("A") == 1 and windmill.runs_of("B") == 1
    assert windmill.count("POST", "/jobs/run/p/f/test/work") == 2


def test_a_wrong_token_fails_the_step_with_a_clear_message_and_opens_the_circuit(
        fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill, WINDMILL_TOKEN="not-the-token")
    fleet.workers()
    input_id = fleet.submit(fleet.task_file([{"id": "A"}, {"id": "B", "depends_on": ["A"]}]))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.FAILED
    a = fleet.store.steps.latest(p.id)["A"]
    assert a.attempt == 1
    assert "Windmill answered 401" in (a.error or "") and "script f/test/work" in (a.error or "")
    circuits = {c.script: c for c in fleet.store.circuits.all()}
    assert circuits["f/test/work"].state == "open"
    shown = fleet.cli("show", str(p.id))
    assert "circuit f/test/work: open" in shown.stdout, shown.stdout
    assert windmill.executions == []


def test_windmill_down_then_back_the_plan_still_builds_once(
        fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill)
    windmill.stop()
    fleet.workers()
    input_id = fleet.submit(fleet.task_file(diamond(0.05)))
    p = plan_of(fleet, input_id)
    wait_for(lambda: "step_submit_retry" in fleet.logs(), timeout=30)
    windmill.start()
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT, p.error
    assert sorted(a["task_id"] for _, _, a in windmill.executions) == list("ABCDEF")


def test_a_misconfigured_worker_fails_the_plan_with_the_reason(fleet: Fleet) -> None:
    fleet.env.update(PLANFLEET_DISPATCH="windmill")
    fleet.env.pop("WINDMILL_URL", None)
    fleet.workers()
    input_id = fleet.submit(fleet.task_file([{"id": "A"}]))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.FAILED
    assert p.error == "dispatch 'windmill' needs WINDMILL_URL and WINDMILL_TOKEN to be set"


def test_flow_mode_runs_the_plan_as_one_windmill_flow(
        fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill, PLANFLEET_BUILD_MODE="flow")
    fleet.workers()
    input_id = fleet.submit(fleet.task_file(diamond(0.1, B={"fail_times": 1}), max_parallel=3))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.BUILT, (p.error, fleet.logs())
    path = f"f/planfleet/plan_{p.id}"
    flow = windmill.flows[path]
    assert [m["value"]["type"] for m in flow["value"]["modules"]] == ["branchall"] * len(
        p.plan["batches"])
    # one flow job, under the id the plan recorded before asking for it
    flow_job = fleet.store.plans.flow_job(p.id)
    runs = [j for j in windmill.jobs.values() if j.kind == "flow" and j.parent is None]
    assert [j.id for j in runs] == [str(flow_job)] and runs[0].path == path
    steps = fleet.store.steps.latest(p.id)
    for task, step in steps.items():
        assert step.status is models.StepStatus.COMPLETED
        sub = windmill.jobs[str(step.windmill_job_id)]
        assert sub.parent == str(flow_job)  # the step is its branch of the flow
        assert step.result["value"]["task_id"] == task
    assert windmill.runs_of("B") == 2  # Windmill's module retry, not ours
    assert windmill.runs_of("A") == 1


def test_flow_mode_failure_marks_the_step_and_skips_later_waves(
        fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill, PLANFLEET_BUILD_MODE="flow", PLANFLEET_STEP_MAX_ATTEMPTS="1")
    fleet.workers()
    input_id = fleet.submit(fleet.task_file(diamond(0.05, A={"fail": True}), max_parallel=3))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.FAILED
    steps = fleet.store.steps.latest(p.id)
    assert steps["A"].status is models.StepStatus.FAILED
    assert steps["A"].error == "Exception: A failed (run 1)"
    assert steps["E"].status is models.StepStatus.SKIPPED


def test_flow_mode_cancel_cancels_the_flow_job(fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill, PLANFLEET_BUILD_MODE="flow")
    fleet.workers()
    input_id = fleet.submit(fleet.task_file(diamond(3.0)))
    p = plan_of(fleet, input_id)
    wait_for(lambda: fleet.store.plans.flow_job(p.id) is not None
             and str(fleet.store.plans.flow_job(p.id)) in windmill.jobs, timeout=30)
    assert fleet.cli("cancel", str(p.id)).returncode == 0
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.CANCELLED
    wait_for(lambda: windmill.jobs[str(fleet.store.plans.flow_job(p.id))].canceled, timeout=20)
    wait_for(lambda: all(s.terminal for s in fleet.store.steps.latest(p.id).values()), 20)


def test_outcome_classes_through_windmill(fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill)
    fleet.workers()
    content = fleet.task_file(
        [{"id": "A", "solver": ["angrav", "jules"], "args": {"down": "angrav"}},
         {"id": "B", "args": {"fail_times": 1, "raise": "TransientError"}}],
        solvers={"angrav": {"script": "f/test/work"}, "jules": {"script": "f/test/work"}})
    p = finished(fleet, plan_of(fleet, fleet.submit(content)).id)
    assert p.status is models.PlanStatus.BUILT, p.error
    a = [s for s in fleet.store.steps.all(p.id) if s.task_id == "A"]
    assert [(s.solver, s.error_type) for s in a] == [("angrav", "agent_unavailable"),
                                                      ("jules", None)]
    b = [s for s in fleet.store.steps.all(p.id) if s.task_id == "B"]
    assert b[0].error_type == "transient" and b[1].status is models.StepStatus.COMPLETED
    # the second job got the first one's failure as feedback
    second = windmill.jobs[str(b[1].windmill_job_id)].args
    assert second["feedback"][0]["error"] == "TransientError: B failed (run 1)"
    assert second["feedback"][0]["error_type"] == "transient"


def test_a_question_through_windmill_is_answered_and_the_plan_goes_on(
        fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill)
    fleet.workers()
    content = fleet.task_file([
        {"id": "A", "args": {"fail_times": 1, "raise": "SpecificationError"}},
        {"id": "B", "depends_on": ["A"]}])
    p = plan_of(fleet, fleet.submit(content))
    wait_for(lambda: fleet.store.plans.get(p.id).status is models.PlanStatus.BLOCKED, 60)
    a = fleet.store.steps.latest(p.id)["A"]
    assert a.error_type == "specification" and "A failed (run 1)" in (a.question or "")
    assert fleet.cli("decide", str(p.id), "A", "answer", "--note", "use SQLite").returncode == 0
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT
    second = windmill.jobs[str(fleet.store.steps.latest(p.id)["A"].windmill_job_id)].args
    assert second["clarification"]["answer"] == "use SQLite"


def test_a_windmill_job_past_its_timeout_is_cancelled_and_retried_longer(
        fleet: Fleet, windmill: FakeWindmill) -> None:
    use_windmill(fleet, windmill, PLANFLEET_TIMEOUT_GRACE="0.2", PLANFLEET_ON_EXHAUSTED="fail")
    fleet.workers()
    content = fleet.task_file([{"id": "A", "timeout": 0.5, "max_attempts": 2,
                                "args": {"sleep": 3}}])
    p = finished(fleet, plan_of(fleet, fleet.submit(content)).id)
    assert p.status is models.PlanStatus.FAILED
    a = [s for s in fleet.store.steps.all(p.id) if s.task_id == "A"]
    assert [(s.error_type, s.timeout) for s in a] == [("timeout", 0.5), ("timeout", 1.0)]
    assert "timed out after 1 s" in (a[1].error or "")
    for s in a:  # each job was cancelled in Windmill
        assert windmill.jobs[str(s.windmill_job_id)].canceled
