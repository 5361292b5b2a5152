"""From a task list to a plan: schedule, batches, critical path, explanations; and replanning
what remains once some tasks finished or are under way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from planfleet import defaults
from planfleet.planner import explain, graph, search
from planfleet.planner import schedule as sch
from planfleet.planner.errors import PlanningError, Problem
from planfleet.planner.tasks import SolverSpec, TaskList

_EPS = 1e-9
#: Minutes an overdue running task is still assumed to take.
_OVERDUE = 1e-6


class PlanTask(BaseModel):
    """A task as the build workers need it."""

    model_config = ConfigDict(frozen=True)
    title: str
    estimate: float
    priority: int
    effective_priority: int
    depends_on: list[str]
    solver: list[str]
    script: str
    parallel: bool
    args: dict[str, Any]
    max_attempts: int | None = None
    timeout: float | None = None
    #: the quality check the task's output goes through (None: none)
    qa: str | None = None


class Slot(BaseModel):
    """When a task runs in the simulated schedule (minutes from the plan's start)."""

    model_config = ConfigDict(frozen=True)
    start: float
    finish: float
    slack: float


class Plan(BaseModel):
    """The planner's answer (DESIGN §6)."""

    model_config = ConfigDict(frozen=True)
    project: str | None
    format: str
    max_parallel: int
    solvers: dict[str, SolverSpec]
    task_count: int
    total_work: float
    makespan: float
    lower_bound: float
    critical_path: list[str]
    critical_path_length: float
    #: dispatch order among ready tasks (the build workers follow it)
    priority_order: list[str]
    batches: list[list[str]]
    immediate_batch: list[str]
    schedule: dict[str, Slot]
    explanation: dict[str, str]
    tasks: dict[str, PlanTask]
    search: dict[str, Any] = Field(default_factory=dict)
    #: the task file's own step policy (what it leaves out is the fleet's)
    policy: dict[str, Any] = Field(default_factory=dict)
    #: the solvers in the file's order (a fallback order; ``solvers`` is a mapping, and a
    #: stored JSON object keeps no order)
    solver_order: list[str] = Field(default_factory=list)
    #: what the file held that was not planned, or read with a guess (see the input's warnings)
    warnings: list[dict[str, Any]] = Field(default_factory=list)
    #: ids of tasks the file marks done (left out; a dependency on one is met)
    done_in_source: list[str] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts and headline numbers (stored beside the plan)."""
        return {
            "project": self.project,
            "tasks": self.task_count,
            "batches": len(self.batches),
            "max_parallel": self.max_parallel,
            "total_work": self.total_work,
            "makespan": self.makespan,
            "lower_bound": self.lower_bound,
            "gap": (self.makespan / self.lower_bound - 1) if self.lower_bound > 0 else 0.0,
            "critical_path": self.critical_path,
            "critical_path_length": self.critical_path_length,
            "immediate": len(self.immediate_batch),
            "warnings": len(self.warnings),
        }


def _instance(
    task_list: TaskList, g: graph.Graph, m: int, capacity: Mapping[str, int]
) -> tuple[sch.Instance, list[str]]:
    names: list[str] = []
    index: dict[str, int] = {}
    solver = []
    for t in g.tasks:
        primary = t.solver[0] if t.solver else None
        if primary is None or primary not in capacity:
            solver.append(-1)
            continue
        if primary not in index:
            index[primary] = len(names)
            names.append(primary)
        solver.append(index[primary])
    inst = sch.Instance(
        dur=[t.estimate for t in g.tasks],
        succ=g.succ,
        pred=g.pred,
        m=m,
        solver=solver,
        caps=[capacity[s] for s in names],
        exclusive=[not t.parallel for t in g.tasks],
    )
    return inst, names


def _capacities(task_list: TaskList, extra: Mapping[str, int] | None) -> dict[str, int]:
    caps = {n: s.capacity for n, s in task_list.solvers.items() if s.capacity is not None}
    for name, cap in (extra or {}).items():
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise PlanningError([Problem("bad_capacity",
                                         f"solver {name!r}: capacity must be an integer >= 1")])
        caps[name] = cap
    return caps


def critical_path(inst: sch.Instance, blevel: Sequence[float]) -> list[int]:
    if not blevel:
        return []
    first = [i for i in range(inst.n) if not inst.pred[i]]
    node = max(first, key=lambda i: (blevel[i], -i))
    path = [node]
    while inst.succ[node]:
        node = max(inst.succ[node], key=lambda j: (blevel[j], -j))
        path.append(node)
    return path


def waves(inst: sch.Instance, s: sch.Schedule, key: Sequence[int]) -> list[list[int]]:
    """Group tasks into waves for display and flow export: each wave after the waves of its
    dependencies, at most max_parallel tasks (and solver capacity) per wave, a parallel:false
    task alone in a wave of its own; tasks placed in order of their simulated start.

    Full waves are skipped with union-find pointers (one set for "full or closed", one per
    solver for "solver at capacity"), so placing n tasks stays near-linear.
    """
    order = sorted(range(inst.n), key=lambda i: (s.start[i], key[i]))
    wave_of = [0] * inst.n
    members: list[list[int]] = []
    use: list[dict[int, int]] = []
    full: dict[int, int] = {}  # wave -> a later wave to try instead
    solver_full: dict[int, dict[int, int]] = {}
    for i in order:
        w = max((wave_of[p] + 1 for p in inst.pred[i]), default=0)
        sv = inst.solver[i]
        if inst.exclusive[i]:
            w = len(members)  # alone, in a wave of its own after everything placed so far
        else:
            while True:
                w = _find(full, w)
                if sv < 0 or w >= len(members):
                    break
                w2 = _find(solver_full.setdefault(sv, {}), w)
                if w2 == w:
                    break
                w = w2
        if w >= len(members):
            w = len(members)
            members.append([])
            use.append({})
        members[w].append(i)
        wave_of[i] = w
        if sv >= 0:
            use[w][sv] = use[w].get(sv, 0) + 1
            if use[w][sv] >= inst.caps[sv]:
                solver_full.setdefault(sv, {})[w] = w + 1
        if inst.exclusive[i] or len(members[w]) >= inst.m:
            full[w] = w + 1
    return [sorted(ws, key=lambda i: key[i]) for ws in members if ws]


def _find(parent: dict[int, int], w: int) -> int:
    """Union-find lookup with path compression: the first wave from ``w`` not skipped."""
    root = w
    while root in parent:
        root = parent[root]
    while w != root:
        parent[w], w = root, parent[w]
    return root


def plan(
    task_list: TaskList,
    *,
    max_parallel: int | None = None,
    solver_capacity: Mapping[str, int] | None = None,
    default_script: str = defaults.DEFAULT_SCRIPT,
    budget: float | None = None,
    max_evaluations: int | None = None,
) -> Plan:
    """Plan ``task_list``: validate its graph, choose a priority order, simulate the build.

    ``max_parallel`` overrides the file's own (else the default); ``solver_capacity`` adds or
    overrides per-solver capacities. Raises PlanningError with every problem found.
    """
    m = max_parallel or task_list.max_parallel or defaults.MAX_PARALLEL
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise PlanningError([Problem("bad_field", "max_parallel must be an integer >= 1",
                                     field="max_parallel")])
    g = graph.validate(task_list)
    caps = _capacities(task_list, solver_capacity)
    inst, solver_names = _instance(task_list, g, m, caps)
    business = [t.priority for t in g.tasks]
    result = search.optimise(inst, g.topo, business, budget=budget,
                             max_evaluations=max_evaluations)
    s = result.schedule
    blevel, bound, eff = result.blevel, result.lower_bound, result.effective_priority
    cp = critical_path(inst, blevel)
    ids = g.ids
    order = sorted(range(g.n), key=lambda i: result.key[i])
    slots = {
        ids[i]: Slot(start=s.start[i], finish=s.finish[i],
                     slack=max(0.0, s.makespan - blevel[i] - s.start[i]))
        for i in range(g.n)
    }
    tasks = {}
    for i, t in enumerate(g.tasks):
        primary = t.solver[0] if t.solver else None
        spec = task_list.solvers.get(primary) if primary else None
        script = t.script or (spec.script if spec and spec.script else None) or default_script
        tasks[t.id] = PlanTask(
            title=t.title, estimate=t.estimate, priority=t.priority, effective_priority=eff[i],
            depends_on=[ids[p] for p in g.pred[i]], solver=list(t.solver), script=script,
            parallel=t.parallel, args=dict(t.args), max_attempts=t.max_attempts,
            timeout=t.timeout, qa=(spec.qa if spec and spec.qa else None) or task_list.qa,
        )
    batches = waves(inst, s, result.key)
    immediate = [ids[i] for i in order if s.start[i] <= _EPS]
    return Plan(
        warnings=[w.to_dict() for w in task_list.warnings],
        policy=task_list.policy.model_dump(exclude_none=True),
        done_in_source=list(task_list.done_in_source),
        solver_order=list(task_list.solvers),
        project=task_list.project,
        format=task_list.format,
        max_parallel=m,
        solvers=dict(task_list.solvers),
        task_count=g.n,
        total_work=sum(inst.dur),
        makespan=s.makespan,
        lower_bound=bound,
        critical_path=[ids[i] for i in cp],
        critical_path_length=max(blevel, default=0.0),
        priority_order=[ids[i] for i in order],
        batches=[[ids[i] for i in b] for b in batches],
        immediate_batch=immediate,
        schedule=slots,
        explanation=explain.explain(g, inst, s, blevel, eff, set(cp), solver_names),
        tasks=tasks,
        search={
            "method": result.method,
            "evaluations": result.evaluations,
            "seconds": round(result.seconds, 4),
            "baseline_makespan": result.baseline,
        },
    )


class Remaining(BaseModel):
    """What is left of a plan at ``now``: what to start now and when the rest will run."""

    model_config = ConfigDict(frozen=True)
    now: float
    start_now: list[str]
    schedule: dict[str, Slot]
    makespan: float


def replan(
    p: Plan,
    completed: Sequence[str] | set[str],
    running: Mapping[str, float],
    now: float,
) -> Remaining:
    """The remaining schedule of plan ``p`` after ``completed`` tasks finished and ``running``
    ones (task id -> start time, minutes) are under way at ``now``, following the plan's
    priority order. ``start_now`` is what a build worker should start at this moment."""
    ids = p.priority_order
    index = {t: i for i, t in enumerate(ids)}
    unknown = [t for t in [*completed, *running] if t not in index]
    if unknown:
        raise PlanningError([Problem("unknown_task", f"not in the plan: {', '.join(unknown)}")])
    tasks = [p.tasks[t] for t in ids]
    succ: list[list[int]] = [[] for _ in ids]
    pred: list[list[int]] = [[] for _ in ids]
    for i, t in enumerate(tasks):
        for d in t.depends_on:
            pred[i].append(index[d])
            succ[index[d]].append(i)
    caps_by_name = {n: s.capacity for n, s in p.solvers.items() if s.capacity is not None}
    names = sorted({t.solver[0] for t in tasks if t.solver and t.solver[0] in caps_by_name})
    sidx = {n: k for k, n in enumerate(names)}
    inst = sch.Instance(
        dur=[t.estimate for t in tasks], succ=succ, pred=pred, m=p.max_parallel,
        solver=[sidx.get(t.solver[0], -1) if t.solver else -1 for t in tasks],
        caps=[caps_by_name[n] for n in names],
        exclusive=[not t.parallel for t in tasks],
    )
    finished = set(completed)
    done = [t in finished for t in ids]
    # a task past its estimate still holds its slot now: assume it ends just after
    run = {
        index[t]: max(now + _OVERDUE, start + tasks[index[t]].estimate)
        for t, start in running.items()
    }
    s = sch.simulate(inst, list(range(len(ids))), done=done, running=run, now=now)
    rest = [i for i in range(len(ids)) if not done[i]]
    return Remaining(
        now=now,
        start_now=[ids[i] for i in rest if i not in run and abs(s.start[i] - now) <= _EPS],
        schedule={ids[i]: Slot(start=s.start[i], finish=s.finish[i], slack=0.0) for i in rest},
        makespan=s.makespan if rest else now,
    )
