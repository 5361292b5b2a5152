"""A dispatch round reads only the ready steps it could start (a few more than the free slots,
in the sharing policy's order), yet chooses what the policy chooses over every ready step."""

from __future__ import annotations

import functools
import random
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from planfleet.config import Config
from planfleet.schema import repositories
from planfleet.schema.repositories import FleetLoad, Store
from planfleet.workers import dispatching, sharing

AGING = 600.0
SOLVERS = ("angrav", "claude", "qa", None)


def _fleet(url: str, rng: random.Random) -> None:
    """A random fleet: plans with limits and caps, steps running and steps ready (of many
    priorities and ages), declared solvers."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO solvers (name, capacity) VALUES ('angrav', %s), ('claude', %s)",
                     (rng.randint(1, 12), rng.randint(1, 40)))
        conn.execute("UPDATE settings SET max_running = %s", (rng.choice([5, 30, 1000]),))
        for p in range(rng.randint(5, 60)):
            caps = {"angrav": rng.randint(1, 3)} if rng.random() < 0.3 else None
            (plan_id,) = conn.execute(
                "INSERT INTO plans (status, plan, digest, max_parallel, solver_caps, served_at) "
                "VALUES ('building', '{}', %s, %s, %s, now() - make_interval(secs => %s)) "
                "RETURNING id", (f"d{p}", rng.randint(1, 6), None if caps is None else Jsonb(caps),
                                 rng.choice([0, 5, 50, 500]))).fetchone()  # type: ignore[misc]
            for t in range(rng.randint(1, 14)):
                solver = rng.choice(SOLVERS)
                running = rng.random() < 0.25
                conn.execute(
                    "INSERT INTO steps (plan_id, task_id, status, script, solver, priority, rank,"
                    " alone, ready_at, started_at, windmill_job_id) VALUES (%s, %s, %s, 'f/x', %s,"
                    " %s, %s, %s, %s, %s, %s)",
                    (plan_id, f"T{t:02d}", "running" if running else "pending", solver,
                     rng.choice([0, 25, 50, 75, 100]), t, rng.random() < 0.05,
                     None if running else _ago(conn, rng.uniform(0, 3000)),
                     _ago(conn, 1) if running else None, uuid.uuid4() if running else None))


def _ago(conn: psycopg.Connection[Any], seconds: float) -> Any:
    row = conn.execute("SELECT now() - make_interval(secs => %s)", (seconds,)).fetchone()
    assert row is not None
    return row[0]


def _choose(load: FleetLoad, config: Config) -> list[int]:
    candidates, plans, fleet = dispatching.snapshot(load, config)
    if fleet.free <= 0:
        return []
    return [c.step_id for c in sharing.choose(candidates, plans, fleet, aging=AGING)]


@pytest.mark.parametrize("seed", range(16))
def test_the_windowed_round_chooses_what_the_policy_chooses_over_every_ready_step(
        database_url: str, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    _fleet(database_url, rng)
    # a narrow window, so that the prefilter (not the margin) has to be right
    monkeypatch.setattr(repositories, "DISPATCH_MARGIN", 2)
    config = Config(database_url=database_url, dispatch="windmill", aging=AGING)
    store = Store.from_url(database_url)
    try:
        everything = store.fleet.load()
        expected = _choose(everything, config)
        seen: list[FleetLoad] = []

        def windowed(load: FleetLoad) -> list[tuple[int, uuid.UUID]]:
            seen.append(load)
            return []  # choose nothing: the fleet stays as it is

        store.fleet.dispatch(windowed, cap=functools.partial(dispatching.fleet_cap, config),
                             aging=AGING, cooldown=60.0)
        # (the round reads again, every candidate, when the window may have left out one
        # that a slot would take)
        got = _choose(seen[-1], config) if seen else []
        assert got == expected
        if seen:
            assert len(seen[0].ready) <= len(everything.ready)
    finally:
        store.close()

