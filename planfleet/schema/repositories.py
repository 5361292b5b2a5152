"""Repositories: the verbs the rest of planfleet uses on Postgres. Each owns its transaction."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from planfleet import exceptions, models
from planfleet.schema import queries
from planfleet.schema.connector import Cursor, Database


def _event(
    cur: Cursor,
    kind: str,
    message: str,
    *,
    input_id: int | None = None,
    plan_id: int | None = None,
    step_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    cur.execute(
        queries.get("insert_event"),
        {
            "kind": kind,
            "input_id": input_id,
            "plan_id": plan_id,
            "step_id": step_id,
            "message": message,
            "data": Jsonb(data or {}),
        },
    )


@dataclasses.dataclass(frozen=True)
class FileVersion:
    """A stable file the watcher read (``content`` set) or refused (``error`` set)."""

    filename: str
    size: int
    mtime_ns: int
    digest: str | None = None
    content: bytes | None = None
    error: str | None = None


class SettingsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self) -> models.Settings:
        with self._db.transaction() as cur:
            cur.execute(queries.get("get_settings"))
            row = cur.fetchone()
        if row is None:
            raise exceptions.StoreError("the settings row is missing: run `planfleet migrate`")
        return models.Settings.from_row(row)

    def update(
        self,
        *,
        auto_plan: bool | None = None,
        auto_build: bool | None = None,
        max_parallel: int | None = None,
        watch_dir: str | None = None,
        set_watch_dir: bool = False,
    ) -> models.Settings:
        """Change the given settings; ``set_watch_dir`` with ``watch_dir=None`` clears it."""
        params = {
            "auto_plan": auto_plan,
            "auto_build": auto_build,
            "max_parallel": max_parallel,
            "watch_dir": watch_dir,
            "set_watch_dir": set_watch_dir,
        }
        with self._db.transaction() as cur:
            cur.execute(queries.get("update_settings"), params)
            row = cur.fetchone()
            assert row is not None
            changed = {k: v for k, v in params.items() if v is not None and k != "set_watch_dir"}
            if set_watch_dir:
                changed["watch_dir"] = watch_dir
            _event(cur, "settings_changed", f"settings changed: {changed}", data=changed)
        return models.Settings.from_row(row)


class InputRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record_files(
        self, source_dir: str, files: Sequence[FileVersion], *, queue: bool
    ) -> list[models.RecordOutcome]:
        """Record stable file versions in one transaction; versions seen before are skipped.

        ``queue`` marks new inputs ``queued`` (the caller enqueues them once this returns).
        """
        by_name = {f.filename: f for f in files}  # one version per name in a batch
        ordered = sorted(by_name.values(), key=lambda f: f.filename)
        params = {
            "dir": source_dir,
            "names": [f.filename for f in ordered],
            "sizes": [f.size for f in ordered],
            "mtimes": [f.mtime_ns for f in ordered],
            "digests": [f.digest for f in ordered],
            "contents": [f.content for f in ordered],
            "errors": [f.error for f in ordered],
            "queue": queue,
        }
        with self._db.transaction() as cur:
            cur.execute(queries.get("record_files"), params)
            rows = cur.fetchall()
        return [models.RecordOutcome(**row) for row in rows]

    def known_files(self, source_dir: str) -> set[tuple[str, int, int]]:
        """``(filename, size, mtime_ns)`` of every version already looked at in a dir."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("known_files"), {"dir": source_dir})
            return {(r["filename"], r["size"], r["mtime_ns"]) for r in cur.fetchall()}

    def list(
        self, *, status: models.InputStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[models.PendingInput]:
        with self._db.transaction() as cur:
            cur.execute(
                queries.get("list_inputs"),
                {"status": status, "limit": limit, "offset": offset},
            )
            return [models.PendingInput.from_row(r) for r in cur.fetchall()]

    def counts(self) -> dict[str, int]:
        with self._db.transaction() as cur:
            cur.execute(queries.get("count_inputs_by_status"))
            return {r["status"]: r["n"] for r in cur.fetchall()}

    def get(self, input_id: int, *, content: bool = False) -> models.PendingInput:
        name = "get_input_with_content" if content else "get_input"
        with self._db.transaction() as cur:
            cur.execute(queries.get(name), {"id": input_id})
            row = cur.fetchone()
        if row is None:
            raise exceptions.NotFound(f"input {input_id} does not exist")
        return models.PendingInput.from_row(row)

    def _transition(self, query: str, input_id: int, expected: str, **params: Any) -> None:
        with self._db.transaction() as cur:
            cur.execute(queries.get(query), {"id": input_id, **params})
            if cur.fetchone() is not None:
                return
        current = self.get(input_id)  # raises NotFound
        raise exceptions.InvalidTransition(
            f"input {input_id} is {current.status}, not {expected}"
        )

    def queue(self, input_id: int) -> None:
        """pending -> queued; the caller enqueues the plan job."""
        self._transition("queue_input", input_id, "pending")

    def replan(self, input_id: int) -> None:
        """planned | failed -> queued: plan the stored bytes again."""
        self._transition("replan_input", input_id, "planned or failed (with stored content)")

    def claim(self, input_id: int) -> models.PendingInput | None:
        """queued -> planning; None when another worker has it or it is not queued."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("claim_input"), {"id": input_id})
            row = cur.fetchone()
        return None if row is None else models.PendingInput.from_row(row)

    def requeue(self, input_id: int) -> None:
        """planning -> queued after a transient fault."""
        self._transition("requeue_input", input_id, "planning")


class EventRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self,
        kind: str,
        message: str,
        *,
        input_id: int | None = None,
        plan_id: int | None = None,
        step_id: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self._db.transaction() as cur:
            _event(
                cur,
                kind,
                message,
                input_id=input_id,
                plan_id=plan_id,
                step_id=step_id,
                data=data,
            )

    def list(
        self,
        *,
        input_id: int | None = None,
        plan_id: int | None = None,
        kind: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[models.Event]:
        with self._db.transaction() as cur:
            cur.execute(
                queries.get("list_events"),
                {
                    "input_id": input_id,
                    "plan_id": plan_id,
                    "kind": kind,
                    "before": before,
                    "limit": limit,
                },
            )
            return [models.Event.from_row(r) for r in cur.fetchall()]


class Store:
    """Every repository over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.settings = SettingsRepository(db)
        self.inputs = InputRepository(db)
        self.events = EventRepository(db)

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(Database(url))

    def close(self) -> None:
        self.db.close()
