"""Step lifecycle end to end (real workers, the local runner): each outcome class's policy,
feedback into retries, escalation and a person's decisions, clarifications, pause/resume."""

from __future__ import annotations

from typing import Any

from planfleet import models
from tests.conftest import stays, wait_for
from tests.integration.conftest import Fleet
from tests.integration.test_pipeline import finished, plan_of

S = models.StepStatus
LIFE = "f/test/lifecycle"


def task(tid: str, **args: Any) -> dict[str, Any]:
    deps = args.pop("depends_on", [])
    extra = {k: args.pop(k) for k in ("max_attempts", "timeout", "solver") if k in args}
    return {"id": tid, "script": LIFE, "args": args, "depends_on": deps, **extra}


def attempts(fleet: Fleet, plan_id: int, tid: str) -> list[models.Step]:
    return [s for s in fleet.store.steps.all(plan_id) if s.task_id == tid]


def blocked(fleet: Fleet, plan_id: int) -> models.PlanRecord:
    got = wait_for(lambda: (p := fleet.store.plans.get(plan_id)).status
                   is models.PlanStatus.BLOCKED and p, timeout=60, interval=0.1)
    assert isinstance(got, models.PlanRecord)
    return got


def test_transient_errors_retry_with_feedback_from_every_attempt(fleet: Fleet) -> None:
    fleet.workers()
    p = plan_of(fleet, fleet.submit(fleet.task_file([
        task("A", mode="transient", fail_times=2),
        task("B", mode="report", fail_times=1)])))
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT, p.error
    a = attempts(fleet, p.id, "A")
    assert [s.status for s in a] == [S.FAILED, S.FAILED, S.COMPLETED]
    assert [s.error_type for s in a[:2]] == ["transient", "transient"]
    runs = fleet.executions(p.id, "A")
    assert runs[0]["feedback"] is None
    assert [f["error"] for f in runs[2]["feedback"]] == [
        "TransientError: A: flaky network", "TransientError: A: flaky network"]
    assert [f["attempt"] for f in runs[2]["feedback"]] == [1, 2]
    b = attempts(fleet, p.id, "B")  # an error the script reported in its result
    assert b[0].error_type == "transient" and b[0].error == "B: reported a transient error"
    assert b[1].status is S.COMPLETED


def test_a_timeout_is_retried_with_a_longer_timeout(fleet: Fleet) -> None:
    fleet.env.update(PLANFLEET_TIMEOUT_FACTOR="3")
    fleet.workers()
    p = plan_of(fleet, fleet.submit(fleet.task_file([
        task("A", mode="timeout", fail_times=1, sleep=1.5, timeout=1)])))
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT, p.error
    a = attempts(fleet, p.id, "A")
    assert a[0].error_type == "timeout" and a[0].timeout == 1.0  # the task's own
    assert a[1].timeout == 3.0 and a[1].status is S.COMPLETED


def test_an_unavailable_agent_hands_the_task_to_the_next_solver(fleet: Fleet) -> None:
    fleet.workers()
    content = fleet.task_file(
        [task("A", mode="agent", down="angrav", solver=["angrav", "jules"])],
        solvers={"angrav": {"script": LIFE}, "jules": {"script": LIFE}})
    p = finished(fleet, plan_of(fleet, fleet.submit(content)).id)
    assert p.status is models.PlanStatus.BUILT, p.error
    a = attempts(fleet, p.id, "A")
    assert [(s.solver, s.status) for s in a] == [("angrav", S.FAILED), ("jules", S.COMPLETED)]
    assert a[0].error_type == "agent_unavailable"
    assert (a[1].started_at - a[0].finished_at).total_seconds() < 1.5  # at once, no backoff
    assert fleet.executions(p.id, "A")[1]["solver"] == "jules"


def test_a_question_blocks_the_step_until_a_person_answers(fleet: Fleet) -> None:
    fleet.workers()
    p = plan_of(fleet, fleet.submit(fleet.task_file([
        task("A", mode="spec"), task("B", depends_on=["A"]), task("C")])))
    p = blocked(fleet, p.id)  # C done, A waits for a person, B waits for A: the worker left
    latest = fleet.store.steps.latest(p.id)
    assert latest["A"].status is S.BLOCKED and latest["A"].error_type == "specification"
    assert latest["A"].question == "SpecificationError: Which database should the migration target?"
    assert latest["C"].status is S.COMPLETED and latest["B"].status is S.PENDING
    assert p.worker is None
    shown = fleet.cli("show", str(p.id))
    assert "BLOCKED A:" in shown.stdout and "planfleet decide" in shown.stdout
    assert any(e.kind == "step_blocked" for e in fleet.store.events.list(plan_id=p.id))
    r = fleet.cli("decide", str(p.id), "A", "answer")
    assert r.returncode == 3 and "needs its text" in r.stderr
    r = fleet.cli("decide", str(p.id), "A", "answer", "--note", "Postgres 15")
    assert r.returncode == 0, r.stderr
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT
    runs = fleet.executions(p.id, "A")
    assert runs[1]["clarification"] == {
        "question": "SpecificationError: Which database should the migration target?",
        "answer": "Postgres 15"}
    assert fleet.cli("decide", str(p.id), "A", "retry").returncode == 3  # not blocked now


def test_exhausted_attempts_escalate_then_retry_with_a_note(fleet: Fleet) -> None:
    fleet.workers()
    p = plan_of(fleet, fleet.submit(fleet.task_file([
        task("A", mode="error", fail_times=2, max_attempts=2), task("B", depends_on=["A"])])))
    p = blocked(fleet, p.id)
    a = fleet.store.steps.latest(p.id)["A"]
    assert a.status is S.BLOCKED and a.attempt == 2
    assert a.question is not None and a.question.startswith("2 attempts failed (last: error")
    r = fleet.cli("decide", str(p.id), "A", "retry", "--note", "use the v2 endpoint")
    assert r.returncode == 0, r.stderr
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT
    feedback = fleet.executions(p.id, "A")[2]["feedback"]
    assert [f.get("error") or f.get("note") for f in feedback] == [
        "ValueError: A: wrong output 1", "ValueError: A: wrong output 2",
        "use the v2 endpoint"]


def test_a_skipped_step_lets_its_dependents_go_on_and_the_plan_says_so(fleet: Fleet) -> None:
    fleet.workers()
    p = plan_of(fleet, fleet.submit(fleet.task_file([
        task("A", mode="error", fail_times=9, max_attempts=1), task("B", depends_on=["A"])])))
    blocked(fleet, p.id)
    assert fleet.cli("decide", str(p.id), "A", "skip").returncode == 0
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT
    assert p.summary["build"]["skipped_by_a_person"] == ["A"]
    latest = fleet.store.steps.latest(p.id)
    assert latest["A"].status is S.SKIPPED and latest["A"].decision == {"decision": "skip"}
    assert latest["B"].status is S.COMPLETED


def test_a_failed_decision_skips_dependents_and_fails_the_plan(fleet: Fleet) -> None:
    fleet.workers()
    p = plan_of(fleet, fleet.submit(fleet.task_file([
        task("A", mode="error", fail_times=9, max_attempts=1), task("B", depends_on=["A"]),
        task("C")])))
    blocked(fleet, p.id)
    assert fleet.cli("decide", str(p.id), "A", "fail").returncode == 0
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.FAILED
    latest = fleet.store.steps.latest(p.id)
    assert latest["B"].status is S.SKIPPED and latest["C"].status is S.COMPLETED


def test_pause_lets_running_steps_finish_and_starts_nothing_until_resumed(
        fleet: Fleet) -> None:
    fleet.workers()
    chain = [task(f"T{i}", mode="ok", depends_on=[f"T{i - 1}"] if i else [])
             for i in range(3)]
    for t in chain:
        t["args"]["sleep"] = 0.0
    chain[1]["args"].update(mode="timeout", fail_times=1, sleep=4.0)  # T1 runs for a while
    p = plan_of(fleet, fleet.submit(fleet.task_file(chain)))
    wait_for(lambda: fleet.store.steps.latest(p.id).get("T1") is not None
             and fleet.store.steps.latest(p.id)["T1"].active, timeout=30)
    assert fleet.cli("pause", str(p.id)).returncode == 0
    wait_for(lambda: fleet.store.steps.latest(p.id)["T1"].status is S.COMPLETED, timeout=30)
    wait_for(lambda: fleet.store.plans.get(p.id).status is models.PlanStatus.PAUSED, timeout=30)
    # nothing new starts while it is paused (a turn would start T2 at once)
    stays(lambda: fleet.store.plans.get(p.id).status is models.PlanStatus.PAUSED
          and fleet.store.steps.latest(p.id)["T2"].status is S.PENDING, 2.0)
    assert fleet.cli("pause", str(p.id)).returncode == 3
    assert fleet.cli("resume", str(p.id)).returncode == 0
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.BUILT
    assert len(fleet.executions(p.id, "T1")) == 1


def test_on_exhausted_fail_keeps_the_old_behaviour(fleet: Fleet) -> None:
    fleet.env.update(PLANFLEET_ON_EXHAUSTED="fail")
    fleet.workers()
    p = plan_of(fleet, fleet.submit(fleet.task_file([
        task("A", mode="error", fail_times=9, max_attempts=2), task("B", depends_on=["A"])])))
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.FAILED
    assert fleet.store.steps.latest(p.id)["B"].status is S.SKIPPED


def test_a_failed_quality_check_retries_the_step_with_its_findings(fleet: Fleet) -> None:
    fleet.workers()
    content = fleet.task_file(
        [{"id": "A", "args": {"sleep": 0, "qa_pass_from": 2}},
         {"id": "B", "depends_on": ["A"], "args": {"sleep": 0}}], qa="f/test/qa")
    p = finished(fleet, plan_of(fleet, fleet.submit(content)).id)
    assert p.status is models.PlanStatus.BUILT, p.error
    a = attempts(fleet, p.id, "A")
    assert [s.status for s in a] == [S.FAILED, S.COMPLETED]
    assert a[0].error_type == "qa"
    assert "A: output of run 1 is incomplete" in (a[0].error or "")
    assert a[1].result["qa"] == {"passed": True, "findings": []}
    assert a[1].result["value"]["executions"] == 2  # the step's own output is kept
    assert a[1].qa_job_id is not None and a[1].qa_job_id != a[1].windmill_job_id
    events = [e.message for e in fleet.store.events.list(plan_id=p.id, kind="step_status")]
    assert "A running -> needs_qa" in events or "A dispatched -> needs_qa" in events
    assert "A needs_qa -> completed" in events


def test_a_task_files_policy_overrides_the_fleets(fleet: Fleet) -> None:
    fleet.workers()  # the fleet escalates after 3 attempts; this file fails after 2
    content = fleet.task_file(
        [task("A", mode="error", fail_times=9), task("B", depends_on=["A"])],
        policy={"max_attempts": 2, "retry_base": 0.01, "on_exhausted": "fail"})
    p = finished(fleet, plan_of(fleet, fleet.submit(content)).id)
    assert p.status is models.PlanStatus.FAILED
    assert len(attempts(fleet, p.id, "A")) == 2
    assert fleet.store.steps.latest(p.id)["B"].status is S.SKIPPED


def test_a_bad_policy_is_a_clear_planning_error(fleet: Fleet) -> None:
    fleet.worker("plan_queue")
    input_id = fleet.submit(b"policy: {max_attempts: 0, on_exhausted: shrug}\ntasks: [{id: A}]\n")
    wait_for(lambda: fleet.store.inputs.get(input_id).status is models.InputStatus.FAILED, 30)
    error = fleet.store.inputs.get(input_id).error or ""
    assert "policy.max_attempts" in error and "policy.on_exhausted" in error


def test_a_single_solver_task_falls_back_along_the_files_solvers(fleet: Fleet) -> None:
    fleet.workers()
    content = fleet.task_file(
        [task("A", mode="agent", down="angrav", solver="angrav")],
        solvers={"angrav": {"script": LIFE}, "jules": {"script": LIFE}})
    p = finished(fleet, plan_of(fleet, fleet.submit(content)).id)
    assert p.status is models.PlanStatus.BUILT, p.error
    assert [s.solver for s in attempts(fleet, p.id, "A")] == ["angrav", "jules"]


def test_a_paused_plan_can_be_cancelled(fleet: Fleet) -> None:
    fleet.workers()
    p = plan_of(fleet, fleet.submit(fleet.task_file(
        [task("A", mode="timeout", fail_times=1, sleep=3.0), task("B", depends_on=["A"])])))
    wait_for(lambda: (s := fleet.store.steps.latest(p.id).get("A")) is not None and s.active,
             timeout=30)
    assert fleet.cli("pause", str(p.id)).returncode == 0
    assert fleet.cli("cancel", str(p.id)).returncode == 0
    p = finished(fleet, p.id)
    assert p.status is models.PlanStatus.CANCELLED
    wait_for(lambda: all(s.terminal for s in fleet.store.steps.latest(p.id).values()), 30)
    assert fleet.store.steps.latest(p.id)["B"].status is S.CANCELLED
