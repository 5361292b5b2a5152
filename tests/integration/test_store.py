"""The store on real Postgres: guarded transitions, races, migrations, settings."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from planfleet import exceptions, models
from planfleet.schema import migrate
from planfleet.schema.repositories import FileVersion, Store


def _record(store: Store, name: str, body: bytes, *, queue: bool = True) -> int:
    import hashlib

    (out,) = store.inputs.record_files(
        "/in",
        [FileVersion(name, len(body), 1, hashlib.sha256(body).hexdigest(), body)],
        queue=queue,
    )
    return out.input_id


def test_two_connections_race_for_one_claim_and_exactly_one_wins(
    database_url: str, store: Store
) -> None:
    for round_ in range(20):
        input_id = _record(store, f"f{round_}.yaml", f"tasks: [{round_}]".encode())
        barrier = threading.Barrier(2)
        stores = [Store.from_url(database_url) for _ in range(2)]

        def claim(s: Store, barrier: threading.Barrier = barrier,
                  input_id: int = input_id) -> models.PendingInput | None:
            barrier.wait()
            return s.inputs.claim(input_id, f"job-{id(s)}")

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(claim, stores))
        for s in stores:
            s.close()
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert winners[0].status is models.InputStatus.PLANNING
        assert winners[0].attempts == 1
        assert winners[0].content == f"tasks: [{round_}]".encode()


def test_transitions_refuse_the_wrong_state_with_the_reason(store: Store) -> None:
    input_id = _record(store, "a.yaml", b"tasks: []", queue=False)
    store.inputs.queue(input_id)
    with pytest.raises(exceptions.InvalidTransition, match="is queued, not pending"):
        store.inputs.queue(input_id)
    with pytest.raises(exceptions.NotFound, match="input 999 does not exist"):
        store.inputs.queue(999)
    with pytest.raises(exceptions.InvalidTransition):
        store.inputs.replan(input_id)


def test_status_changes_are_written_to_events_by_the_trigger(store: Store) -> None:
    input_id = _record(store, "a.yaml", b"tasks: []", queue=False)
    store.inputs.queue(input_id)
    store.inputs.claim(input_id, "job-1")
    kinds = [(e.kind, e.message) for e in reversed(store.events.list(input_id=input_id))]
    assert kinds == [
        ("input_recorded", "a.yaml recorded (9 bytes)"),
        ("input_status", "pending -> queued"),
        ("input_status", "queued -> planning"),
    ]


def test_refused_rows_cannot_be_replanned(store: Store) -> None:
    (out,) = store.inputs.record_files(
        "/in", [FileVersion("big.json", 10**9, 5, error="too big")], queue=True
    )
    assert out.outcome == "refused"
    got = store.inputs.get(out.input_id)
    assert got.status is models.InputStatus.FAILED and got.error == "too big"
    with pytest.raises(exceptions.InvalidTransition):
        store.inputs.replan(out.input_id)


def test_schema_forbids_an_input_without_bytes_unless_failed(database_url: str) -> None:
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO pending_inputs (filename, size, status) VALUES ('x', 0, 'pending')")


def test_status_enums_match_the_database(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for enum_cls, pg_name in [
            (models.InputStatus, "planfleet_input_status"),
            (models.PlanStatus, "planfleet_plan_status"),
            (models.StepStatus, "planfleet_step_status"),
        ]:
            row = conn.execute(f"SELECT enum_range(NULL::{pg_name})::text[]").fetchone()
            assert row is not None
            assert list(row[0]) == [m.value for m in enum_cls]


def test_concurrent_migrations_apply_once(template_db: str) -> None:
    admin = psycopg.conninfo.make_conninfo(
        __import__("tests.conftest", fromlist=["ADMIN_URL"]).ADMIN_URL, dbname="postgres"
    )
    name = "planfleet_migrate_race"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    try:
        assert migrate.ensure_database(url) is True
        assert migrate.ensure_database(url) is False
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: migrate.migrate(url), range(4)))
        assert sorted(map(len, results)) == [0, 0, 0, len(migrate.available())]
        assert migrate.migrate(url) == []
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_settings_update_and_clear_watch_dir(store: Store) -> None:
    s = store.settings.update(auto_plan=False, max_parallel=4, watch_dir="/x", set_watch_dir=True)
    assert (s.auto_plan, s.auto_build, s.max_parallel, s.watch_dir) == (False, True, 4, "/x")
    s = store.settings.update(set_watch_dir=True)
    assert s.watch_dir is None and s.max_parallel == 4
    assert store.events.list(kind="settings_changed")


def _backend(store: Store) -> int:
    with store.db.session() as cur:  # the connection this thread's statements use
        cur.execute("SELECT pg_backend_pid() AS pid")
        row = cur.fetchone()
    assert row is not None
    return int(row["pid"])


def test_turn_locks_are_held_once_over_one_connection_and_always_let_go(
    database_url: str, store: Store
) -> None:
    other = Store.from_url(database_url)
    try:
        with store.plans.turn_locks([41, 44, 41]) as locked:
            assert locked == [41, 44]
            # another connection cannot take them; this thread's statements use their own
            with other.plans.turn_locks([44, 42, 41]) as second:
                assert second == [42]  # another plan's turn is free
            with psycopg.connect(database_url, autocommit=True) as conn:
                holder = conn.execute("SELECT pid, objid FROM pg_locks WHERE locktype = "
                                      "'advisory' AND classid = 7014 AND granted").fetchall()
            assert sorted(r[1] for r in holder) == [41, 44]
            assert {r[0] for r in holder} == {_backend(store)}
        with other.plans.turn_locks([41, 44]) as again:
            assert again == [41, 44]  # released at the end of the block
        with pytest.raises(RuntimeError, match="the turn failed"), store.plans.turn_locks([41]):
            raise RuntimeError("the turn failed")
        with other.plans.turn_locks([41]) as after_error:
            assert after_error == [41]  # released when the turn raised, too
        with other.plans.turn_locks([41]) as once, store.plans.turn_locks([41]) as none:
            assert once == [41] and none == []
        # a thread holding plans' locks takes no more on the same connection
        with store.plans.turn_locks([41]), pytest.raises(RuntimeError, match="already holds"), \
                store.plans.turn_locks([43]):
            pass
        with psycopg.connect(database_url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                "AND classid = 7014").fetchone() == (0,)
    finally:
        other.close()
