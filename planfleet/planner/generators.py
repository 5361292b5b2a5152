"""Random task graphs for tests and benchmarks (the shapes scheduling papers use)."""

from __future__ import annotations

import random
from collections.abc import Callable

from planfleet.planner.tasks import TaskList, TaskSpec

Edges = list[tuple[int, int]]  # (u, v): v depends on u


def estimates(n: int, rng: random.Random, kind: str = "uniform") -> list[float]:
    """Integer minutes: ``uniform`` 1..100 (as the standard task-graph set), ``exponential``
    (mean 30), ``bimodal`` (mostly short, some long)."""
    if kind == "uniform":
        return [float(rng.randint(1, 100)) for _ in range(n)]
    if kind == "exponential":
        return [float(max(1, round(rng.expovariate(1 / 30)))) for _ in range(n)]
    if kind == "bimodal":
        return [float(rng.randint(1, 10) if rng.random() < 0.8 else rng.randint(60, 240))
                for _ in range(n)]
    raise ValueError(kind)


def layered(n: int, rng: random.Random, width: int | None = None, fan: int = 3) -> Edges:
    """Layers of about ``width`` tasks; each task depends on up to ``fan`` of the layer above."""
    width = width or max(2, int(n**0.5))
    edges: Edges = []
    layer: list[int] = []
    prev: list[int] = []
    for i in range(n):
        layer.append(i)
        if prev:
            for u in rng.sample(prev, min(len(prev), rng.randint(1, fan))):
                edges.append((u, i))
        if len(layer) >= width or (len(layer) >= 1 and rng.random() < 1 / width):
            prev, layer = layer, []
    return edges


def random_order(n: int, rng: random.Random, degree: float = 3.0) -> Edges:
    """Each task depends on about ``degree`` earlier tasks chosen at random (a random DAG over
    a random order, like the standard task-graph set's 'sameprob' graphs, kept sparse)."""
    edges: Edges = []
    for v in range(1, n):
        k = min(v, max(0, int(rng.expovariate(1 / degree))))
        for u in set(rng.randrange(0, v) for _ in range(k)):
            edges.append((u, v))
    return edges


def fan_in_out(n: int, rng: random.Random, fan: int = 8) -> Edges:
    """Alternating fan-out and fan-in: a hub spreads to many tasks that join again."""
    edges: Edges = []
    hub = 0
    i = 1
    while i < n:
        width = min(n - i - 1, rng.randint(2, fan))
        if width <= 0:
            edges.append((hub, i))
            break
        leaves = list(range(i, i + width))
        for leaf in leaves:
            edges.append((hub, leaf))
        join = i + width
        for leaf in leaves:
            edges.append((leaf, join))
        hub, i = join, join + 1
    return edges


def chains(n: int, rng: random.Random, k: int = 6, cross: float = 0.05) -> Edges:
    """``k`` long chains with occasional links across."""
    edges: Edges = []
    last: list[int | None] = [None] * k
    for i in range(n):
        c = i % k
        if last[c] is not None:
            edges.append((last[c], i))  # type: ignore[arg-type]
        if rng.random() < cross and i > k:
            edges.append((rng.randrange(0, i - k + 1), i))
        last[c] = i
    return edges


SHAPES: dict[str, Callable[[int, random.Random], Edges]] = {
    "layered": layered,
    "random": random_order,
    "fan": fan_in_out,
    "chains": chains,
}


def task_list(durations: list[float], edges: Edges, **extra: object) -> TaskList:
    deps: list[list[str]] = [[] for _ in durations]
    for u, v in edges:
        deps[v].append(f"T{u}")
    tasks = tuple(
        TaskSpec(id=f"T{i}", estimate=d, depends_on=tuple(sorted(set(deps[i]))))
        for i, d in enumerate(durations)
    )
    return TaskList(format="generated", tasks=tasks, **extra)  # type: ignore[arg-type]


def random_task_list(n: int, seed: int, shape: str = "random", estimate_kind: str = "uniform") -> TaskList:
    rng = random.Random(seed)
    return task_list(estimates(n, rng, estimate_kind), SHAPES[shape](n, rng))
