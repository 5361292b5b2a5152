"""What a new version of a source does to the plan of the version before: the revision.

Pure functions of plain data (no database, no clock); the build applies what they decide.

**Task identity.** A task is the same across versions when its id is. A renamed task is a
removal (of the old id) and an addition (of the new one).

**Changed.** A task is *changed* when what decides its execution changed (its
:class:`TaskDefinition`):

* ``script`` — the effective script: the task's own, else its first solver's, else the default
  (as the plan resolved it);
* ``solver`` — its first solver, whose name the script receives and whose capacity it takes;
* ``args`` — its arguments, compared as canonical JSON (key order and ``1`` vs ``1.0`` do not
  matter);
* ``depends_on`` — its direct dependencies, as a set. A dependency on a task the new version
  marks done in its source is met in both versions, and a dependency a format bridges over such
  a task (a markdown task after a ``[x]`` one waits for what the done one waited for) is not
  new: neither makes the task changed.

Not changed by: the title, estimate and priority (they re-plan, nothing runs again); the
fallback solvers after the first (they only decide what runs after a failure); ``parallel``
(when it may run, not what it does); ``timeout`` and ``max_attempts`` (how long and how often
an execution is tried, not what it does: a longer timeout must not cancel a running job); the
quality check (it judges the output and applies to attempts that end after the revision).

**The rules** (:func:`decide`), by a task's state in the running build:

=====================  ==============================  ======================================
task                   state                           action
=====================  ==============================  ======================================
unchanged              not started, ready              ``keep`` (ready ones may wait again)
unchanged              dispatched, running             ``adopt``: its job is followed
unchanged              succeeded                       ``keep``; ``stale`` when a dependency
                                                       runs again (``rerun_stale`` with
                                                       ``cascade: true``)
unchanged              failed, cancelled, skipped,     ``keep`` (as it is; a retry of the plan
                       blocked                         treats it as before)
changed                not started, ready, failed,     ``run_new_definition``
                       cancelled, skipped, blocked
changed                dispatched, running             ``cancel_and_rerun`` (``on_change:
                                                       rerun``, default) or
                                                       ``finish_then_rerun`` (``on_change:
                                                       finish``)
changed                succeeded                       ``rerun_completed``
removed, done in       not started, ready              ``not_started_removed``
source
removed, done in       dispatched, running             ``finish_removed`` (``on_removed:
source                                                 finish``, default) or
                                                       ``cancel_removed`` (``on_removed:
                                                       cancel``)
removed, done in       succeeded, failed, cancelled,   ``ended_removed``: nothing runs; a
source                 skipped, blocked                blocked one no longer waits
new                    —                               ``add``
=====================  ==============================  ======================================

``on_change: finish`` means: the running job is not interrupted (it may hold work that must
not stop half-way); once it ends, whatever its outcome, the task runs again with the new
definition — the rule for a changed task that already completed — and its dependents wait for
that run. Its old job's outcome stays in the task's history.

Stale is transitive over completed dependents (by the new version's dependencies): a completed,
unchanged task downstream of a task that runs again is stale, and so is a completed task
downstream of a stale one. Removed tasks and tasks done in the source are recorded as
``removed_from_source`` (with ``done_in_source`` telling the two apart).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from planfleet import models
from planfleet.planner.plan import Plan, PlanTask


class TaskState(enum.StrEnum):
    """Where a task of the running build is (from its latest step)."""

    NOT_STARTED = "not_started"
    READY = "ready"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    BLOCKED = "blocked"


NOT_STARTED = frozenset({TaskState.NOT_STARTED, TaskState.READY})
IN_FLIGHT = frozenset({TaskState.DISPATCHED, TaskState.RUNNING})
ENDED_UNSUCCESSFULLY = frozenset({TaskState.FAILED, TaskState.CANCELLED, TaskState.SKIPPED,
                                  TaskState.BLOCKED})

_STEP_STATES = {
    models.StepStatus.DISPATCHED: TaskState.DISPATCHED,
    models.StepStatus.RUNNING: TaskState.RUNNING,
    # its job succeeded and its quality check runs: a job to follow
    models.StepStatus.NEEDS_QA: TaskState.RUNNING,
    models.StepStatus.BLOCKED: TaskState.BLOCKED,
    models.StepStatus.COMPLETED: TaskState.SUCCEEDED,
    models.StepStatus.FAILED: TaskState.FAILED,
    models.StepStatus.SKIPPED: TaskState.SKIPPED,
    models.StepStatus.CANCELLED: TaskState.CANCELLED,
}


def state_of(step: models.Step | None) -> TaskState:
    """The state of a task from its latest step (None: no step yet, not started)."""
    if step is None:
        return TaskState.NOT_STARTED
    if step.status is models.StepStatus.PENDING:
        return TaskState.READY if step.ready_at is not None else TaskState.NOT_STARTED
    return _STEP_STATES[step.status]


class Action(enum.StrEnum):
    """What the revision does to one task."""

    KEEP = "keep"
    ADOPT = "adopt"
    RUN_NEW_DEFINITION = "run_new_definition"
    CANCEL_AND_RERUN = "cancel_and_rerun"
    FINISH_THEN_RERUN = "finish_then_rerun"
    RERUN_COMPLETED = "rerun_completed"
    STALE = "stale"
    RERUN_STALE = "rerun_stale"
    NOT_STARTED_REMOVED = "not_started_removed"
    CANCEL_REMOVED = "cancel_removed"
    FINISH_REMOVED = "finish_removed"
    ENDED_REMOVED = "ended_removed"
    ADD = "add"


#: The actions after which the task runs (again), with the new version's definition.
RUNS = frozenset({Action.RUN_NEW_DEFINITION, Action.CANCEL_AND_RERUN, Action.FINISH_THEN_RERUN,
                  Action.RERUN_COMPLETED, Action.RERUN_STALE, Action.ADD})
#: The actions whose running job is cancelled.
CANCELS = frozenset({Action.CANCEL_AND_RERUN, Action.CANCEL_REMOVED})
#: The actions whose running job is followed to its end (never submitted again).
FOLLOWS = frozenset({Action.ADOPT, Action.FINISH_THEN_RERUN, Action.FINISH_REMOVED})
#: The actions of tasks that leave the plan.
REMOVES = frozenset({Action.NOT_STARTED_REMOVED, Action.CANCEL_REMOVED, Action.FINISH_REMOVED,
                     Action.ENDED_REMOVED})
_CHANGED = frozenset({Action.RUN_NEW_DEFINITION, Action.CANCEL_AND_RERUN,
                      Action.FINISH_THEN_RERUN, Action.RERUN_COMPLETED})

#: Why a task left the plan.
REMOVED_FROM_SOURCE = "removed_from_source"
DONE_IN_SOURCE = "done_in_source"


def canonical(value: Any) -> str:
    """``value`` as canonical JSON: sorted keys, no blanks, integral floats as integers."""

    def norm(v: Any) -> Any:
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            return int(v)
        if isinstance(v, Mapping):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class TaskDefinition:
    """What decides a task's execution."""

    id: str
    script: str
    solver: str | None
    args: Mapping[str, Any]
    depends_on: frozenset[str]

    def document(self) -> dict[str, Any]:
        """The fields that make its fingerprint, as plain data."""
        return {"script": self.script, "solver": self.solver, "args": dict(self.args),
                "depends_on": sorted(self.depends_on)}

    @property
    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of :meth:`document` (the same across processes,
        versions of Python and key orders)."""
        return _digest(self.document())


def definition_of(task_id: str, task: PlanTask) -> TaskDefinition:
    """A planned task's definition."""
    return TaskDefinition(id=task_id, script=task.script,
                          solver=task.solver[0] if task.solver else None,
                          args=dict(task.args), depends_on=frozenset(task.depends_on))


def definitions(plan: Plan) -> dict[str, TaskDefinition]:
    """Every task's definition in a plan."""
    return {tid: definition_of(tid, task) for tid, task in plan.tasks.items()}


def fingerprints(plan: Plan) -> dict[str, str]:
    """Every task's fingerprint in a plan (e.g. to store beside its steps)."""
    return {tid: d.fingerprint for tid, d in definitions(plan).items()}


@dataclasses.dataclass(frozen=True)
class RevisionPolicy:
    """How a new version revises a running build (the new version's ``policy``)."""

    on_change: Literal["rerun", "finish"] = "rerun"
    on_removed: Literal["cancel", "finish"] = "finish"
    cascade: bool = False

    @classmethod
    def from_mapping(cls, policy: Mapping[str, Any] | None) -> RevisionPolicy:
        """From a plan's ``policy`` (what it leaves out, or sets to null, is the default)."""
        given = {k: v for k, v in (policy or {}).items()
                 if v is not None and k in cls.__dataclass_fields__}
        return cls(**given)


@dataclasses.dataclass(frozen=True)
class Version:
    """A version of a source, as the revision needs it."""

    tasks: Mapping[str, TaskDefinition]
    #: ids the source marks done (left out of ``tasks``)
    done_in_source: frozenset[str] = frozenset()
    policy: RevisionPolicy = RevisionPolicy()

    @classmethod
    def of_plan(cls, plan: Plan) -> Version:
        return cls(tasks=definitions(plan), done_in_source=frozenset(plan.done_in_source),
                   policy=RevisionPolicy.from_mapping(plan.policy))


@dataclasses.dataclass(frozen=True)
class TaskDecision:
    """One task's action, and why."""

    task_id: str
    action: Action
    #: its state when the revision was decided (None: a new task)
    state: TaskState | None
    #: which of script, solver, args, depends_on changed (changed tasks)
    changes: tuple[str, ...] = ()
    #: the tasks running again that make it stale (stale tasks)
    stale_by: tuple[str, ...] = ()
    #: removed_from_source or done_in_source (tasks that leave)
    reason: str | None = None

    @property
    def runs(self) -> bool:
        """It runs (again) with the new definition."""
        return self.action in RUNS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action.value,
                               "state": None if self.state is None else self.state.value}
        if self.changes:
            out["changes"] = list(self.changes)
        if self.stale_by:
            out["stale_by"] = list(self.stale_by)
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclasses.dataclass(frozen=True)
class Revision:
    """What a new version does to each task of the plan, old and new."""

    decisions: Mapping[str, TaskDecision]
    policy: RevisionPolicy
    #: ready tasks that wait again: a dependency of theirs runs (again) or is not done yet
    unready: tuple[str, ...] = ()

    def of(self, *actions: Action) -> list[str]:
        """The ids of tasks with one of ``actions``, sorted."""
        return sorted(t for t, d in self.decisions.items() if d.action in actions)

    @property
    def unchanged(self) -> bool:
        """Nothing runs again, is cancelled, added or removed: only keep and adopt."""
        return all(d.action in (Action.KEEP, Action.ADOPT) for d in self.decisions.values())

    def summary(self) -> dict[str, list[str]]:
        """The diff: ``added``, ``removed`` (deleted from the source), ``done_in_source``
        (marked done there), ``changed``, ``kept``, ``adopted``, ``stale`` (each task in
        exactly one list)."""
        leaving = self.of(*REMOVES)
        return {
            "added": self.of(Action.ADD),
            "removed": [t for t in leaving if self.decisions[t].reason == REMOVED_FROM_SOURCE],
            "done_in_source": [t for t in leaving
                               if self.decisions[t].reason == DONE_IN_SOURCE],
            "changed": self.of(*_CHANGED),
            "kept": self.of(Action.KEEP),
            "adopted": self.of(Action.ADOPT),
            "stale": self.of(Action.STALE, Action.RERUN_STALE),
        }

    def event_data(self) -> dict[str, Any]:
        """What a ``plan_revised`` event records: the diff, the policy, and the action of every
        task the revision does something to (the kept ones are listed in the diff only)."""
        return {**self.summary(), "policy": dataclasses.asdict(self.policy),
                "unready": list(self.unready),
                "tasks": {t: d.to_dict() for t, d in sorted(self.decisions.items())
                          if d.action is not Action.KEEP}}


def changes(old: TaskDefinition, new: TaskDefinition, *,
            bridged: Iterable[str] = (), done: Iterable[str] = ()) -> tuple[str, ...]:
    """Which execution-relevant fields differ from ``old`` to ``new``: dependencies on
    ``done`` tasks are met (left out on both sides), and new dependencies among ``bridged``
    (what the old dependencies now done waited for) are not new."""
    out = []
    if old.script != new.script:
        out.append("script")
    if old.solver != new.solver:
        out.append("solver")
    if old.args != new.args and canonical(old.args) != canonical(new.args):
        out.append("args")
    met = frozenset(done)
    before = old.depends_on - met
    after = new.depends_on - met
    if before != after and not (before <= after and after - before <= frozenset(bridged)):
        out.append("depends_on")
    return tuple(out)


def _ancestors(tasks: Mapping[str, TaskDefinition], start: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in tasks:
            todo.extend(tasks[t].depends_on)
    return seen


def decide(old: Mapping[str, TaskDefinition], states: Mapping[str, TaskState],
           new: Version) -> Revision:
    """The revision of a plan whose tasks are ``old``, each in ``states`` (a task missing
    there has not started), by the ``new`` version (whose policy decides)."""
    policy = new.policy
    done = new.done_in_source
    decisions: dict[str, TaskDecision] = {}
    for tid, before in old.items():
        state = states.get(tid, TaskState.NOT_STARTED)
        after = new.tasks.get(tid)
        if after is None:
            reason = DONE_IN_SOURCE if tid in done else REMOVED_FROM_SOURCE
            if state in NOT_STARTED:
                action = Action.NOT_STARTED_REMOVED
            elif state in IN_FLIGHT:
                action = (Action.CANCEL_REMOVED if policy.on_removed == "cancel"
                          else Action.FINISH_REMOVED)
            else:
                action = Action.ENDED_REMOVED
            decisions[tid] = TaskDecision(tid, action, state, reason=reason)
            continue
        now_done = before.depends_on & done
        bridged = _ancestors(old, now_done) - now_done
        what = changes(before, after, bridged=bridged, done=done)
        if not what:
            action = Action.ADOPT if state in IN_FLIGHT else Action.KEEP
        elif state in IN_FLIGHT:
            action = (Action.FINISH_THEN_RERUN if policy.on_change == "finish"
                      else Action.CANCEL_AND_RERUN)
        elif state is TaskState.SUCCEEDED:
            action = Action.RERUN_COMPLETED
        else:
            action = Action.RUN_NEW_DEFINITION
        decisions[tid] = TaskDecision(tid, action, state, changes=what)
    for tid in new.tasks:
        if tid not in old:
            decisions[tid] = TaskDecision(tid, Action.ADD, None)
    _mark_stale(decisions, new, policy.cascade)
    return Revision(decisions=decisions, policy=policy,
                    unready=_unready(decisions, old, new))


def _topological(tasks: Mapping[str, TaskDefinition]) -> list[str]:
    """Task ids, each after its dependencies (a cycle, which the planner refuses, ends the
    order with what it holds)."""
    waiting = {t: len(task.depends_on & tasks.keys()) for t, task in tasks.items()}
    dependents: dict[str, list[str]] = {}
    for tid, task in tasks.items():
        for dep in task.depends_on & tasks.keys():
            dependents.setdefault(dep, []).append(tid)
    ready = sorted(t for t, n in waiting.items() if n == 0)
    order: list[str] = []
    while ready:
        tid = ready.pop()
        order.append(tid)
        for nxt in dependents.get(tid, ()):
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                ready.append(nxt)
    placed = set(order)
    return order + sorted(t for t in tasks if t not in placed)


def _mark_stale(decisions: dict[str, TaskDecision], new: Version, cascade: bool) -> None:
    """Completed, unchanged tasks downstream (by the new version's dependencies) of a task
    that runs again are stale, transitively; ``stale_by`` names the tasks running again."""
    roots: dict[str, frozenset[str]] = {}
    for tid in _topological(new.tasks):
        d = decisions[tid]
        if d.action in RUNS:
            roots[tid] = frozenset({tid})
        elif d.state is TaskState.SUCCEEDED and d.action is Action.KEEP:
            upstream = frozenset().union(*(roots.get(x, frozenset())
                                           for x in new.tasks[tid].depends_on))
            if upstream:
                roots[tid] = upstream
                decisions[tid] = dataclasses.replace(
                    d, action=Action.RERUN_STALE if cascade else Action.STALE,
                    stale_by=tuple(sorted(upstream)))


def _unready(decisions: Mapping[str, TaskDecision], old: Mapping[str, TaskDefinition],
             new: Version) -> tuple[str, ...]:
    """Ready tasks that stay and must wait again because of the revision: a dependency of
    theirs runs (again), or a dependency they did not have is not done."""

    def settled(dep: str) -> bool:
        d = decisions.get(dep)
        if d is None or dep not in new.tasks:
            return True  # done in the source, or gone: met
        return d.state in (TaskState.SUCCEEDED, TaskState.SKIPPED) and d.action in (
            Action.KEEP, Action.STALE)

    out = []
    for tid, d in decisions.items():
        if d.state is not TaskState.READY or d.action not in (Action.KEEP,
                                                              Action.RUN_NEW_DEFINITION):
            continue
        deps = new.tasks[tid].depends_on
        added = deps - old[tid].depends_on
        if any(decisions[x].runs for x in deps if x in decisions) or not all(
                settled(x) for x in added):
            out.append(tid)
    return tuple(sorted(out))
