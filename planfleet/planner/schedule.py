"""Event-driven list scheduling: the build's dispatch policy, simulated on estimates.

Whenever a task finishes, the ready tasks are offered slots in priority order and
:func:`planfleet.admission.admit` — the rule the build's dispatch rounds follow too — says
what each does: start, let the next pass (its solver is all busy), or hold the rest back
(``max_parallel`` reached, or a ``parallel: false`` task waiting for the plan to empty, so it
cannot starve).
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Sequence

from planfleet import admission
from planfleet.admission import ALONE, HOLD, PASS

#: Sentinel capacity of "no solver limit".
UNLIMITED = 1 << 30


@dataclasses.dataclass(frozen=True)
class Instance:
    """A scheduling problem on tasks 0..n-1."""

    dur: list[float]
    succ: list[list[int]]
    pred: list[list[int]]
    m: int
    #: solver index per task (-1: no capacity limit)
    solver: list[int]
    #: capacity per solver index
    caps: list[int]
    #: tasks that must run alone
    exclusive: list[bool]

    @property
    def n(self) -> int:
        return len(self.dur)

    def reversed(self) -> Instance:
        """The same problem with every dependency turned around (for backward passes)."""
        return dataclasses.replace(self, succ=self.pred, pred=self.succ)


@dataclasses.dataclass(frozen=True)
class Schedule:
    start: list[float]
    finish: list[float]
    makespan: float


def simulate(
    inst: Instance,
    key: Sequence[int],
    *,
    done: Sequence[bool] | None = None,
    running: dict[int, float] | None = None,
    now: float = 0.0,
) -> Schedule:
    """Run the dispatch policy with priority ``key`` (lower starts first; unique per task).

    ``done`` tasks are finished already; ``running`` maps tasks under way to the time they will
    finish; both count as started before ``now``. Tasks neither done nor running start at
    ``now`` or later.
    """
    n = inst.n
    dur, succ, m = inst.dur, inst.succ, inst.m
    solver, caps, exclusive = inst.solver, inst.caps, inst.exclusive
    start = [0.0] * n
    finish = [0.0] * n
    indeg = [len(p) for p in inst.pred]
    ready: list[tuple[int, int]] = []
    events: list[tuple[float, int]] = []
    busy = [0] * len(caps)
    active = 0  # tasks running
    alone = False  # a parallel:false task is running
    done_list = done or [False] * n
    running = running or {}
    for i in range(n):
        if done_list[i]:
            start[i] = finish[i] = now
            for j in succ[i]:
                indeg[j] -= 1
    for i, f in running.items():
        start[i], finish[i] = now, max(f, now)
        heapq.heappush(events, (finish[i], i))
        active += 1
        if solver[i] >= 0:
            busy[solver[i]] += 1
        if exclusive[i]:
            alone = True
    for i in range(n):
        if indeg[i] == 0 and not done_list[i] and i not in running:
            ready.append((key[i], i))
    heapq.heapify(ready)
    t = now
    heappush, heappop = heapq.heappush, heapq.heappop
    admit = admission.admit
    # A task passed over because its solver is all busy waits parked with that solver until
    # one of the solver's tasks ends: before then the rule would pass it over again.
    parked: list[list[tuple[int, int]]] = [[] for _ in caps]
    while ready or events:
        while ready:
            k, i = ready[0]
            s = solver[i]
            verdict = admit(exclusive[i], active, m, s >= 0 and busy[s] >= caps[s], alone)
            if verdict == HOLD:
                break
            heappop(ready)
            if verdict == PASS:
                parked[s].append((k, i))
                continue
            if s >= 0:
                busy[s] += 1
            start[i] = t
            finish[i] = f = t + dur[i]
            heappush(events, (f, i))
            active += 1
            if verdict == ALONE:
                alone = True
        if not events:
            break  # nothing running and nothing can start: cannot happen on a valid instance
        t, i = heappop(events)
        batch = [i]
        while events and events[0][0] <= t:
            batch.append(heappop(events)[1])
        for i in batch:
            active -= 1
            s = solver[i]
            if s >= 0:
                busy[s] -= 1
                if parked[s]:
                    for item in parked[s]:
                        heappush(ready, item)
                    parked[s] = []
            if exclusive[i]:
                alone = False
            for j in succ[i]:
                indeg[j] -= 1
                if indeg[j] == 0:
                    heappush(ready, (key[j], j))
    makespan = max(finish, default=now)
    return Schedule(start=start, finish=finish, makespan=makespan)


def levels(inst: Instance, topo: Sequence[int]) -> tuple[list[float], list[float]]:
    """(b-level, t-level): the longest path from a task to the end, including its own
    estimate, and the longest path from the start to it, excluding it."""
    n = inst.n
    dur, succ, pred = inst.dur, inst.succ, inst.pred
    blevel = [0.0] * n
    for i in reversed(topo):
        best = 0.0
        for j in succ[i]:
            if blevel[j] > best:
                best = blevel[j]
        blevel[i] = dur[i] + best
    tlevel = [0.0] * n
    for i in topo:
        best = 0.0
        for j in pred[i]:
            v = tlevel[j] + dur[j]
            if v > best:
                best = v
        tlevel[i] = best
    return blevel, tlevel


def keys_from(primary: Sequence[int], secondary: Sequence[float]) -> list[int]:
    """Unique integer keys ordering tasks by ``primary`` (lower first), then ``secondary``
    (lower first), then task number."""
    order = sorted(range(len(primary)), key=lambda i: (primary[i], secondary[i], i))
    key = [0] * len(order)
    for pos, i in enumerate(order):
        key[i] = pos
    return key


def check(inst: Instance, sched: Schedule, eps: float = 1e-6) -> list[str]:
    """Every way ``sched`` breaks the rules (empty when it is feasible)."""
    problems = []
    for i in range(inst.n):
        if abs(sched.finish[i] - sched.start[i] - inst.dur[i]) > eps:
            problems.append(f"task {i}: finish - start != duration")
        for j in inst.pred[i]:
            if sched.start[i] < sched.finish[j] - eps:
                problems.append(f"task {i} starts before its dependency {j} finishes")
    points = sorted({s for s in sched.start})
    for t in points:
        live = [i for i in range(inst.n)
                if sched.start[i] <= t + eps and sched.finish[i] > t + eps and inst.dur[i] > 0]
        if len(live) > inst.m:
            problems.append(f"at {t}: {len(live)} tasks run, max_parallel is {inst.m}")
        per: dict[int, int] = {}
        for i in live:
            if inst.solver[i] >= 0:
                per[inst.solver[i]] = per.get(inst.solver[i], 0) + 1
        for s, c in per.items():
            if c > inst.caps[s]:
                problems.append(f"at {t}: solver {s} runs {c} tasks, capacity {inst.caps[s]}")
        if len(live) > 1 and any(inst.exclusive[i] for i in live):
            problems.append(f"at {t}: a parallel:false task runs beside others")
    return problems
