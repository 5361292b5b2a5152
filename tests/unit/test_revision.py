"""The revision decision: what a new version of a source does to each task of the plan."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

import pytest

from planfleet import models
from planfleet.planner import formats, revision
from planfleet.planner.plan import Plan
from planfleet.planner.plan import plan as make_plan
from planfleet.planner.revision import Action, RevisionPolicy, TaskDefinition, TaskState, Version

S = TaskState


def task(tid: str, deps: tuple[str, ...] = (), *, script: str = "f/x/run",
         solver: str | None = None, **args: Any) -> TaskDefinition:
    return TaskDefinition(tid, script, solver, args, frozenset(deps))


def tasks(*defs: TaskDefinition) -> dict[str, TaskDefinition]:
    return {d.id: d for d in defs}


def version(*defs: TaskDefinition, done: tuple[str, ...] = (), **policy: Any) -> Version:
    return Version(tasks(*defs), frozenset(done), RevisionPolicy(**policy))


def actions(rev: revision.Revision) -> dict[str, str]:
    return {t: d.action.value for t, d in sorted(rev.decisions.items())}


# -- the fingerprint -------------------------------------------------------------------------

def test_the_fingerprint_is_canonical_and_covers_script_solver_args_and_dependencies() -> None:
    a = TaskDefinition("A", "f/x/run", "s", {"b": 1.0, "a": [1, {"y": 2, "x": 1}]},
                       frozenset({"B", "C"}))
    same = TaskDefinition("A", "f/x/run", "s", {"a": [1, {"x": 1, "y": 2}], "b": 1},
                          frozenset({"C", "B"}))
    assert a.fingerprint == same.fingerprint
    assert len(a.fingerprint) == 64
    for other in (TaskDefinition("A", "f/x/other", "s", a.args, a.depends_on),
                  TaskDefinition("A", "f/x/run", "t", a.args, a.depends_on),
                  TaskDefinition("A", "f/x/run", None, a.args, a.depends_on),
                  TaskDefinition("A", "f/x/run", "s", {**a.args, "b": 2}, a.depends_on),
                  TaskDefinition("A", "f/x/run", "s", a.args, frozenset({"B"}))):
        assert other.fingerprint != a.fingerprint
    # a known value: the hash does not depend on the process or Python's hash seed
    assert task("A").fingerprint == revision._digest(
        {"args": {}, "depends_on": [], "script": "f/x/run", "solver": None})


def planned(text: str, name: str = "t.yaml") -> Plan:
    return make_plan(formats.load(text.encode(), name))


def test_title_estimate_priority_timeout_attempts_parallel_and_fallbacks_are_not_a_change(
) -> None:
    before = planned("""
solvers: {a: {script: f/a/run}, b: {script: f/b/run}}
tasks:
  - {id: A, title: One, estimate: 10, priority: low, solver: [a, b], args: {n: 1}}
  - {id: B, depends_on: [A], script: f/x/run}
""")
    after = planned("""
solvers: {a: {script: f/a/run}, b: {script: f/b/other}}
tasks:
  - {id: A, title: Two, estimate: 2h, priority: critical, solver: [a], args: {n: 1.0},
     timeout: 30m, max_attempts: 9, parallel: false}
  - {id: B, depends_on: [A], script: f/x/run, title: renamed}
""")
    assert revision.fingerprints(before) == revision.fingerprints(after)
    rev = revision.decide(revision.definitions(before), {"A": S.SUCCEEDED, "B": S.RUNNING},
                          Version.of_plan(after))
    assert actions(rev) == {"A": "keep", "B": "adopt"} and rev.unchanged


def test_the_effective_script_counts_when_a_solver_s_script_changes() -> None:
    before = planned("solvers: {a: {script: f/a/run}}\ntasks: [{id: A, solver: a}]\n")
    after = planned("solvers: {a: {script: f/a/v2}}\ntasks: [{id: A, solver: a}]\n")
    rev = revision.decide(revision.definitions(before), {"A": S.SUCCEEDED},
                          Version.of_plan(after))
    assert rev.decisions["A"].action is Action.RERUN_COMPLETED
    assert rev.decisions["A"].changes == ("script",)


# -- one rule per row ------------------------------------------------------------------------

@pytest.mark.parametrize(("state", "expected"), [
    (S.NOT_STARTED, Action.KEEP), (S.READY, Action.KEEP), (S.DISPATCHED, Action.ADOPT),
    (S.RUNNING, Action.ADOPT), (S.SUCCEEDED, Action.KEEP), (S.FAILED, Action.KEEP),
    (S.CANCELLED, Action.KEEP), (S.SKIPPED, Action.KEEP), (S.BLOCKED, Action.KEEP)])
def test_an_unchanged_task_is_kept_or_adopted(state: TaskState, expected: Action) -> None:
    rev = revision.decide(tasks(task("A")), {"A": state}, version(task("A")))
    assert rev.decisions["A"].action is expected
    assert rev.unchanged


@pytest.mark.parametrize(("state", "on_change", "expected"), [
    (S.NOT_STARTED, "rerun", Action.RUN_NEW_DEFINITION),
    (S.READY, "finish", Action.RUN_NEW_DEFINITION),
    (S.FAILED, "rerun", Action.RUN_NEW_DEFINITION),
    (S.CANCELLED, "rerun", Action.RUN_NEW_DEFINITION),
    (S.SKIPPED, "rerun", Action.RUN_NEW_DEFINITION),
    (S.BLOCKED, "rerun", Action.RUN_NEW_DEFINITION),
    (S.DISPATCHED, "rerun", Action.CANCEL_AND_RERUN),
    (S.RUNNING, "rerun", Action.CANCEL_AND_RERUN),
    (S.RUNNING, "finish", Action.FINISH_THEN_RERUN),
    (S.DISPATCHED, "finish", Action.FINISH_THEN_RERUN),
    (S.SUCCEEDED, "rerun", Action.RERUN_COMPLETED),
    (S.SUCCEEDED, "finish", Action.RERUN_COMPLETED)])
def test_a_changed_task(state: TaskState, on_change: str, expected: Action) -> None:
    rev = revision.decide(tasks(task("A", n=1)), {"A": state},
                          version(task("A", n=2), on_change=on_change))
    d = rev.decisions["A"]
    assert (d.action, d.changes, d.state) == (expected, ("args",), state)
    assert d.runs and rev.summary()["changed"] == ["A"]
    assert (d.action in revision.CANCELS) == (expected is Action.CANCEL_AND_RERUN)


@pytest.mark.parametrize(("state", "on_removed", "expected"), [
    (S.NOT_STARTED, "finish", Action.NOT_STARTED_REMOVED),
    (S.READY, "cancel", Action.NOT_STARTED_REMOVED),
    (S.DISPATCHED, "finish", Action.FINISH_REMOVED),
    (S.RUNNING, "finish", Action.FINISH_REMOVED),
    (S.RUNNING, "cancel", Action.CANCEL_REMOVED),
    (S.SUCCEEDED, "cancel", Action.ENDED_REMOVED),
    (S.FAILED, "finish", Action.ENDED_REMOVED),
    (S.BLOCKED, "finish", Action.ENDED_REMOVED)])
@pytest.mark.parametrize("done", [False, True])
def test_a_task_removed_or_done_in_the_source(state: TaskState, on_removed: str,
                                              expected: Action, done: bool) -> None:
    rev = revision.decide(tasks(task("A"), task("B")), {"A": state},
                          version(task("B"), done=("A",) if done else (),
                                  on_removed=on_removed))
    d = rev.decisions["A"]
    assert d.action is expected and not d.runs
    summary = rev.summary()
    assert summary["done_in_source" if done else "removed"] == ["A"]
    assert summary["removed" if done else "done_in_source"] == []
    assert d.reason == ("done_in_source" if done else "removed_from_source")


def test_the_default_policy_is_rerun_finish_and_no_cascade() -> None:
    assert RevisionPolicy() == RevisionPolicy("rerun", "finish", False)
    assert RevisionPolicy.from_mapping({"max_attempts": 3, "on_change": None}) == RevisionPolicy()
    assert RevisionPolicy.from_mapping({"on_change": "finish", "on_removed": "cancel",
                                        "cascade": True}) == RevisionPolicy("finish", "cancel",
                                                                            True)
    rev = revision.decide(tasks(task("A", n=1), task("B")), {"A": S.RUNNING, "B": S.RUNNING},
                          Version(tasks(task("A", n=2))))
    assert actions(rev) == {"A": "cancel_and_rerun", "B": "finish_removed"}


def test_a_new_task_is_added_even_when_it_depends_on_a_kept_one() -> None:
    rev = revision.decide(tasks(task("A")), {"A": S.SUCCEEDED},
                          version(task("A"), task("N", ("A",))))
    assert actions(rev) == {"A": "keep", "N": "add"}
    assert rev.summary()["added"] == ["N"] and rev.decisions["N"].state is None


# -- dependencies ----------------------------------------------------------------------------

def test_a_task_whose_dependencies_changed_only_is_changed() -> None:
    rev = revision.decide(tasks(task("A"), task("B"), task("C", ("A",))),
                          {"A": S.SUCCEEDED, "B": S.SUCCEEDED, "C": S.SUCCEEDED},
                          version(task("A"), task("B"), task("C", ("A", "B"))))
    assert rev.decisions["C"].action is Action.RERUN_COMPLETED
    assert rev.decisions["C"].changes == ("depends_on",)


def test_a_not_started_task_whose_dependency_changed_is_kept_and_waits_again() -> None:
    rev = revision.decide(tasks(task("A", n=1), task("B", ("A",)), task("C", ("A",))),
                          {"A": S.SUCCEEDED, "B": S.READY, "C": S.NOT_STARTED},
                          version(task("A", n=2), task("B", ("A",)), task("C", ("A",))))
    assert actions(rev) == {"A": "rerun_completed", "B": "keep", "C": "keep"}
    assert rev.unready == ("B",)


def test_a_ready_task_given_a_dependency_not_done_waits_again() -> None:
    rev = revision.decide(tasks(task("A"), task("B")), {"A": S.RUNNING, "B": S.READY},
                          version(task("A"), task("B", ("A",))))
    assert actions(rev) == {"A": "adopt", "B": "run_new_definition"}
    assert rev.unready == ("B",)
    rev = revision.decide(tasks(task("A"), task("B")), {"A": S.SUCCEEDED, "B": S.READY},
                          version(task("A"), task("B", ("A",))))
    assert rev.unready == ()


def test_a_removed_dependency_leaves_the_new_dependency_lists_to_decide() -> None:
    # A is deleted; the new file drops B's dependency on it: B's dependencies changed
    rev = revision.decide(tasks(task("A"), task("B", ("A",))),
                          {"A": S.SUCCEEDED, "B": S.SUCCEEDED}, version(task("B")))
    assert actions(rev) == {"A": "ended_removed", "B": "rerun_completed"}
    # ... but a dependency on a task done in the source is met: nothing changed for B
    rev = revision.decide(tasks(task("A"), task("B", ("A",))),
                          {"A": S.RUNNING, "B": S.NOT_STARTED}, version(task("B"), done=("A",)))
    assert actions(rev) == {"A": "finish_removed", "B": "keep"}
    assert rev.summary()["done_in_source"] == ["A"]


def test_a_dependency_bridged_over_a_done_task_is_not_a_change() -> None:
    # tasks.md: T3 waited for T2, which waited for T1; with T2 checked, T3 waits for T1
    before = planned("- [ ] T001 One\n- [ ] T002 Two\n- [ ] T003 Three\n", "tasks.md")
    after = planned("- [ ] T001 One\n- [x] T002 Two\n- [ ] T003 Three\n", "tasks.md")
    assert after.done_in_source == ["T002"]
    assert before.tasks["T003"].depends_on != after.tasks["T003"].depends_on
    rev = revision.decide(revision.definitions(before),
                          {"T001": S.SUCCEEDED, "T002": S.SUCCEEDED, "T003": S.SUCCEEDED},
                          Version.of_plan(after))
    assert actions(rev) == {"T001": "keep", "T002": "ended_removed", "T003": "keep"}
    assert rev.summary()["done_in_source"] == ["T002"] and rev.summary()["removed"] == []


def test_a_renamed_task_is_a_removal_and_an_addition() -> None:
    rev = revision.decide(tasks(task("A"), task("B", ("A",))),
                          {"A": S.RUNNING, "B": S.NOT_STARTED},
                          version(task("A2"), task("B", ("A2",))))
    assert actions(rev) == {"A": "finish_removed", "A2": "add", "B": "run_new_definition"}


# -- stale -----------------------------------------------------------------------------------

def chain() -> dict[str, TaskDefinition]:
    return tasks(task("A", n=1), task("B", ("A",)), task("C", ("B",)), task("D", ("C",)))


def test_completed_dependents_of_a_rerun_task_are_stale_transitively() -> None:
    states = {"A": S.SUCCEEDED, "B": S.SUCCEEDED, "C": S.SUCCEEDED, "D": S.RUNNING}
    new = (task("A", n=2), task("B", ("A",)), task("C", ("B",)), task("D", ("C",)))
    rev = revision.decide(chain(), states, version(*new))
    assert actions(rev) == {"A": "rerun_completed", "B": "stale", "C": "stale", "D": "adopt"}
    assert rev.decisions["C"].stale_by == ("A",)
    assert rev.summary()["stale"] == ["B", "C"] and rev.summary()["changed"] == ["A"]
    rev = revision.decide(chain(), states, version(*new, cascade=True))
    assert actions(rev) == {"A": "rerun_completed", "B": "rerun_stale", "C": "rerun_stale",
                            "D": "adopt"}
    assert rev.decisions["B"].runs


def test_staleness_stops_at_a_task_that_did_not_complete() -> None:
    base = tasks(task("A", n=1), task("B", ("A",)), task("C", ("B",)))
    rev = revision.decide(base, {"A": S.SUCCEEDED, "B": S.FAILED, "C": S.SUCCEEDED},
                          version(task("A", n=2), task("B", ("A",)), task("C", ("B",))))
    assert actions(rev) == {"A": "rerun_completed", "B": "keep", "C": "keep"}


def test_a_changed_completed_dependent_is_changed_not_stale_and_names_its_roots() -> None:
    base = tasks(task("A", n=1), task("B", n=1), task("C", ("A", "B")), task("D", ("C",)))
    done = {t: S.SUCCEEDED for t in base}
    rev = revision.decide(base, done, version(task("A", n=2), task("B", n=2),
                                              task("C", ("A", "B"), m=1), task("D", ("C",))))
    assert actions(rev) == {"A": "rerun_completed", "B": "rerun_completed",
                            "C": "rerun_completed", "D": "stale"}
    assert rev.decisions["D"].stale_by == ("C",)
    rev = revision.decide(base, done, version(task("A", n=2), task("B", n=2),
                                              task("C", ("A", "B")), task("D", ("C",))))
    assert rev.decisions["D"].stale_by == ("A", "B")


def test_the_event_data_holds_the_diff_policy_and_every_task() -> None:
    rev = revision.decide(tasks(task("A", n=1), task("B", ("A",)), task("X")),
                          {"A": S.SUCCEEDED, "B": S.SUCCEEDED, "X": S.RUNNING},
                          version(task("A", n=2), task("B", ("A",)), task("N")))
    data = rev.event_data()
    assert {k: data[k] for k in ("added", "removed", "done_in_source", "changed", "kept",
                                 "adopted", "stale")} == {
        "added": ["N"], "removed": ["X"], "done_in_source": [], "changed": ["A"], "kept": [],
        "adopted": [], "stale": ["B"]}
    assert data["policy"] == {"on_change": "rerun", "on_removed": "finish", "cascade": False}
    assert data["tasks"]["A"] == {"action": "rerun_completed", "state": "succeeded",
                                  "changes": ["args"]}
    assert data["tasks"]["B"]["stale_by"] == ["A"]
    assert data["tasks"]["X"]["reason"] == "removed_from_source"


# -- states from steps -----------------------------------------------------------------------

def step(status: models.StepStatus, ready: bool = False) -> models.Step:
    now = dt.datetime.now(dt.UTC)
    return models.Step(id=1, plan_id=1, task_id="A", status=status, attempt=1, tries=1,
                       windmill_job_id=None, script="f/x/run", solver=None, args={},
                       result=None, error=None, not_before=None, started_at=None,
                       finished_at=None, ready_at=now if ready else None)


def test_a_task_s_state_comes_from_its_latest_step() -> None:
    St = models.StepStatus
    assert revision.state_of(None) is S.NOT_STARTED
    assert revision.state_of(step(St.PENDING)) is S.NOT_STARTED
    assert revision.state_of(step(St.PENDING, ready=True)) is S.READY
    assert revision.state_of(step(St.NEEDS_QA)) is S.RUNNING
    assert {revision.state_of(step(s)) for s in St if s is not St.PENDING} == {
        S.DISPATCHED, S.RUNNING, S.BLOCKED, S.SUCCEEDED, S.FAILED, S.SKIPPED, S.CANCELLED}


# -- properties over random small plans ------------------------------------------------------

def random_plan(rng: random.Random, n: int) -> dict[str, TaskDefinition]:
    out = {}
    for i in range(n):
        deps = tuple(f"T{j}" for j in range(i) if rng.random() < 0.3)
        out[f"T{i}"] = task(f"T{i}", deps, script=rng.choice(["f/a/x", "f/b/y"]),
                            n=rng.randint(0, 2))
    return out


def random_states(rng: random.Random, defs: dict[str, TaskDefinition]) -> dict[str, TaskState]:
    return {t: rng.choice(list(TaskState)) for t in defs}


@pytest.mark.parametrize("seed", range(60))
def test_an_unchanged_version_only_keeps_and_adopts(seed: int) -> None:
    rng = random.Random(seed)
    old = random_plan(rng, rng.randint(1, 12))
    states = random_states(rng, old)
    policy = RevisionPolicy(rng.choice(["rerun", "finish"]), rng.choice(["cancel", "finish"]),
                            rng.random() < 0.5)
    rev = revision.decide(old, states, Version(dict(old), policy=policy))
    assert rev.unchanged and not any(d.runs for d in rev.decisions.values())
    for t, d in rev.decisions.items():
        assert d.action is (Action.ADOPT if states[t] in revision.IN_FLIGHT else Action.KEEP)
    assert rev.unready == ()


@pytest.mark.parametrize("seed", range(60))
def test_random_revisions_keep_their_invariants(seed: int) -> None:
    rng = random.Random(1000 + seed)
    old = random_plan(rng, rng.randint(1, 12))
    states = random_states(rng, old)
    # the new version: some tasks dropped (some as done), some changed, some added
    new: dict[str, TaskDefinition] = {}
    done: set[str] = set()
    for t, d in old.items():
        r = rng.random()
        if r < 0.15:
            done.add(t)
            continue
        if r < 0.25:
            continue
        new[t] = task(t, d.depends_on, script=d.script, n=d.args["n"] + (r > 0.8))
    for t in list(new):
        new[t] = dataclasses.replace(new[t], depends_on=new[t].depends_on & new.keys())
    for i in range(rng.randint(0, 3)):
        new[f"N{i}"] = task(f"N{i}", tuple(rng.sample(sorted(new), min(len(new), 1))))
    cascade = rng.random() < 0.5
    rev = revision.decide(old, states, Version(new, frozenset(done),
                                               RevisionPolicy(cascade=cascade)))
    assert set(rev.decisions) == set(old) | set(new)
    summary = rev.summary()
    listed = [t for ids in summary.values() for t in ids]
    assert sorted(listed) == sorted(rev.decisions)  # each task in exactly one list
    for t, d in rev.decisions.items():
        if t not in new:
            assert d.action in revision.REMOVES and not d.runs
        elif t not in old:
            assert d.action is Action.ADD
        # never submitted twice: a running job is adopted, finished or cancelled
        if d.state in revision.IN_FLIGHT:
            assert d.action in revision.FOLLOWS | revision.CANCELS
        if d.action in (Action.STALE, Action.RERUN_STALE):
            assert d.state is S.SUCCEEDED and d.stale_by
            assert (d.action is Action.RERUN_STALE) == cascade
            assert all(rev.decisions[r].runs for r in d.stale_by)
        # a completed task whose dependency runs again is never silently kept as it was
        if d.state is S.SUCCEEDED and t in new and any(
                rev.decisions[x].runs for x in new[t].depends_on):
            assert d.action is not Action.KEEP

