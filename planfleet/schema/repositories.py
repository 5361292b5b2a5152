"""Repositories: the verbs the rest of planfleet uses on Postgres. Each owns its transaction."""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from psycopg.types.json import Jsonb

from planfleet import defaults, durations, exceptions, models, names, sources
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


def _storable(value: Any) -> Any:
    """``value`` with every NUL character (which Postgres text and jsonb refuse) escaped."""
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class FileVersion:
    """A stable file the watcher read (``content`` set) or refused (``error`` set)."""

    filename: str
    size: int
    mtime_ns: int
    digest: str | None = None
    content: bytes | None = None
    error: str | None = None
    #: its source key (None: decided from its bytes, name and folder by
    #: :func:`planfleet.sources.of_input`)
    source: str | None = None


@dataclasses.dataclass(frozen=True)
class NextAttempt:
    """How a step's next attempt differs from the one before (None: the same)."""

    script: str | None = None
    solver: str | None = None
    timeout: float | None = None
    #: merged into its args (feedback, an answer)
    extra: dict[str, Any] | None = None

    def params(self, step_id: int, delay: float, fresh: bool) -> dict[str, Any]:
        return {"id": step_id, "delay": delay, "fresh": fresh, "script": self.script,
                "solver": self.solver, "timeout": self.timeout,
                "extra": Jsonb(self.extra) if self.extra else None}


class _Guarded:
    """A repository whose records change state by guarded statements."""

    noun = "record"
    #: each repository's own lookup (raises NotFound)
    get: Callable[[int], Any]

    def __init__(self, db: Database) -> None:
        self._db = db

    def _transition(self, query: str, record_id: int, expected: str, **params: Any) -> None:
        """Run the guarded ``query``; when it matched nothing, say why (NotFound, or the
        current status)."""
        with self._db.session() as cur:
            cur.execute(queries.get(query), {"id": record_id, **params})
            if cur.fetchone() is not None:
                return
        current = self.get(record_id)  # raises NotFound
        raise exceptions.InvalidTransition(
            f"{self.noun} {record_id} is {current.status}, not {expected}"
        )


class SettingsRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self) -> models.Settings:
        with self._db.session() as cur:
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
        max_running: int | None = None,
        watch_dir: str | None = None,
        set_watch_dir: bool = False,
    ) -> models.Settings:
        """Change the given settings; ``set_watch_dir`` with ``watch_dir=None`` clears it."""
        params = {
            "auto_plan": auto_plan,
            "auto_build": auto_build,
            "max_parallel": max_parallel,
            "max_running": max_running,
            "watch_dir": watch_dir,
            "set_watch_dir": set_watch_dir,
        }
        with self._db.transaction() as cur:
            cur.execute(queries.get("update_settings"), params)
            row = cur.fetchone()
            assert row is not None
            changed: dict[str, Any] = {
                k: v for k, v in params.items() if v is not None and k != "set_watch_dir"}
            if set_watch_dir:
                changed["watch_dir"] = watch_dir
            _event(cur, "settings_changed", f"settings changed: {changed}", data=changed)
        return models.Settings.from_row(row)


class InputRepository(_Guarded):
    noun = "input"

    def record_files(
        self, source_dir: str, files: Sequence[FileVersion], *, queue: bool
    ) -> list[models.RecordOutcome]:
        """Record stable file versions in one transaction; versions seen before are skipped.

        Each version belongs to its source; one whose bytes are those of its source's latest
        version is a ``duplicate`` (of that input). ``queue`` marks new inputs ``queued`` (the
        caller enqueues them once this returns).
        """
        # one version per name in a batch; a name that is not UTF-8 is stored readably
        # (escaped) and losslessly (its bytes), see planfleet.names
        by_name = {names.display(f.filename): f for f in files}
        ordered = sorted(by_name.items())
        intake = sources.intake_of_dir(source_dir)
        params = {
            "dir": names.display(source_dir),
            "names": [shown for shown, _ in ordered],
            "raw_names": [names.raw(f.filename) for _, f in ordered],
            "sources": [f.source or sources.of_input(intake, shown, f.content)
                        for shown, f in ordered],
            "sizes": [f.size for _, f in ordered],
            "mtimes": [f.mtime_ns for _, f in ordered],
            "digests": [f.digest for _, f in ordered],
            "contents": [f.content for _, f in ordered],
            "errors": [None if f.error is None else names.display(f.error) for _, f in ordered],
            "queue": queue,
        }
        with self._db.session() as cur:
            cur.execute(queries.get("record_files"), params)
            rows = cur.fetchall()
        return [models.RecordOutcome(**row) for row in rows]

    def known_files(self, source_dir: str) -> set[tuple[str, int, int]]:
        """``(filename, size, mtime_ns)`` of every version already looked at in a dir (the
        operating system's name: a name that is not UTF-8 comes back from its bytes)."""
        with self._db.session() as cur:
            cur.execute(queries.get("known_files"), {"dir": names.display(source_dir)})
            return {(names.from_stored(r["filename"], r["filename_bytes"]), r["size"],
                     r["mtime_ns"]) for r in cur.fetchall()}

    def list(
        self, *, status: models.InputStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[models.PendingInput]:
        with self._db.session() as cur:
            cur.execute(
                queries.get("list_inputs"),
                {"status": status, "limit": limit, "offset": offset},
            )
            return [models.PendingInput.from_row(r) for r in cur.fetchall()]

    def counts(self) -> dict[str, int]:
        with self._db.session() as cur:
            cur.execute(queries.get("count_inputs_by_status"))
            return {r["status"]: r["n"] for r in cur.fetchall()}

    def get(self, input_id: int, *, content: bool = False) -> models.PendingInput:
        name = "get_input_with_content" if content else "get_input"
        with self._db.session() as cur:
            cur.execute(queries.get(name), {"id": input_id})
            row = cur.fetchone()
        if row is None:
            raise exceptions.NotFound(f"input {input_id} does not exist")
        return models.PendingInput.from_row(row)

    def queue(self, input_id: int) -> None:
        """pending -> queued; the caller enqueues the plan job."""
        self._transition("queue_input", input_id, "pending")

    def replan(self, input_id: int) -> None:
        """planned | failed -> queued: plan the stored bytes again."""
        self._transition("replan_input", input_id, "planned or failed (with stored content)")

    def claim(self, input_id: int, job: str) -> models.PendingInput | None:
        """queued -> planning for RQ job ``job`` (which may claim again on a retry); None when
        another worker has it or it is not queued."""
        with self._db.session() as cur:
            cur.execute(queries.get("claim_input"), {"id": input_id, "job": job})
            row = cur.fetchone()
        return None if row is None else models.PendingInput.from_row(row)

    def fail(self, input_id: int, error: str, problems: builtins.list[dict[str, Any]],
             job: str | None = None,
             warnings: builtins.list[dict[str, Any]] | None = None) -> None:
        """planning -> failed with the planner's messages and warnings (when ``job`` still
        holds it)."""
        # a message may quote the input, whose text Postgres may not take (NUL)
        error, problems = _storable(error), _storable(problems)
        warnings = _storable(warnings)
        with self._db.transaction() as cur:
            cur.execute(queries.get("finish_input"),
                        {"id": input_id, "status": "failed", "error": error, "job": job,
                         "warnings": Jsonb(warnings or [])})
            if cur.fetchone() is None:
                raise exceptions.InvalidTransition(f"input {input_id} is no longer planning")
            _event(cur, "plan_failed", error[:500], input_id=input_id,
                   data={"problems": problems[:200]})

    def stale(self, *, queued: float, planning: float) -> builtins.list[tuple[int, str]]:
        rows = self._db.fetch_all("stale_inputs", {"queued": queued, "planning": planning})
        return [(r["id"], r["status"]) for r in rows]

    def heartbeat(self, input_id: int, job: str) -> bool:
        """The plan job ``job`` still holds the input (its planning lease goes on)."""
        return self._db.matched("heartbeat_input", {"id": input_id, "job": job})

    def queue_pending(self) -> builtins.list[int]:
        """pending -> queued for all (auto_plan is on); the caller enqueues them."""
        return [r["id"] for r in self._db.fetch_all("queue_pending_inputs", {})]

    def touch(self, input_id: int) -> bool:
        return self._db.matched("touch_input", {"id": input_id})

    def release(self, input_id: int, planning: float) -> bool:
        """planning -> queued when its planner has been silent for ``planning`` seconds."""
        return self._db.matched("release_input", {"id": input_id, "planning": planning})


class PlanRepository(_Guarded):
    noun = "plan"

    def create_from_input(
        self, input_id: int, plan: dict[str, Any], summary: dict[str, Any], digest: str,
        *, queue: bool, job: str | None = None,
        warnings: list[dict[str, Any]] | None = None,
        carry: Sequence[int] = (), stale: Sequence[int] = (), supersede: int | None = None,
    ) -> int:
        """planning -> planned and the plan (``queued`` when ``queue``), in one transaction
        (when ``job`` still holds the input); ``warnings`` are kept on the input. ``carry``:
        completed steps of the source's previous plan that the new one keeps (``stale``: those
        kept though a dependency runs again); ``supersede``: the source's plan that never
        started, cancelled in favour of this one."""
        with self._db.transaction() as cur:
            if supersede is not None:
                cur.execute(queries.get("cancel_plan"), {
                    "id": supersede, "reason": f"superseded by a newer version (input {input_id})"})
            cur.execute(
                queries.get("insert_plan_for_input"),
                {"input_id": input_id, "plan": Jsonb(plan), "summary": Jsonb(summary),
                 "digest": digest, "status": "queued" if queue else "ready_for_build",
                 "job": job, "warnings": Jsonb(warnings or [])},
            )
            row = cur.fetchone()
            if row is None:
                raise exceptions.InvalidTransition(f"input {input_id} is no longer planning")
            kept: list[str] = []
            if carry:
                cur.execute(queries.get("carry_steps"),
                            {"plan_id": row["id"], "ids": list(carry), "stale": list(stale)})
                kept = sorted(r["task_id"] for r in cur.fetchall())
            _event(cur, "plan_created",
                   f"plan {row['id']}: {summary.get('tasks')} tasks, makespan "
                   f"{durations.format_minutes(summary.get('makespan'))}"
                   + (f"; {len(kept)} done before kept" if kept else ""),
                   input_id=input_id, plan_id=row["id"],
                   data={**summary, "source": row["source"],
                         **({"kept": kept} if kept else {})})
            return int(row["id"])

    def list(
        self, *, status: models.PlanStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[models.PlanRecord]:
        with self._db.session() as cur:
            cur.execute(queries.get("list_plans"),
                        {"status": status, "limit": limit, "offset": offset})
            return [models.PlanRecord.from_row(r) for r in cur.fetchall()]

    def labels(self, ids: Iterable[int]) -> dict[int, models.PlanLabel]:
        """What names each of these plans for a person (an unknown id is left out)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        return {r["id"]: models.PlanLabel(**r)
                for r in self._db.fetch_all("plan_labels", {"ids": wanted})}

    def of_input(self, input_id: int) -> builtins.list[models.PlanRecord]:
        """The plans made from input ``input_id``, newest first."""
        return [models.PlanRecord.from_row(r)
                for r in self._db.fetch_all("plans_of_input", {"input_id": input_id})]

    def counts(self) -> dict[str, int]:
        with self._db.session() as cur:
            cur.execute(queries.get("count_plans_by_status"))
            return {r["status"]: r["n"] for r in cur.fetchall()}

    def get(self, plan_id: int, *, document: bool = True) -> models.PlanRecord:
        """The plan, with its plan document unless ``document`` is false."""
        with self._db.session() as cur:
            cur.execute(queries.get("get_plan" if document else "get_plan_head"), {"id": plan_id})
            row = cur.fetchone()
        if row is None:
            raise exceptions.NotFound(f"plan {plan_id} does not exist")
        return models.PlanRecord.from_row(row)

    def queue(self, plan_id: int) -> None:
        """ready_for_build -> queued; the caller enqueues the build job."""
        self._transition("queue_plan", plan_id, "ready_for_build")

    def claim(self, plan_id: int, worker: str, stale: float) -> models.PlanRecord | None:
        """queued (or building with a silent worker) -> building for ``worker``."""
        with self._db.session() as cur:
            cur.execute(queries.get("claim_plan"),
                        {"id": plan_id, "worker": worker, "stale": stale})
            row = cur.fetchone()
        return None if row is None else models.PlanRecord.from_row(row)

    def block(self, plan_id: int) -> bool:
        """building -> blocked by its turn (only steps waiting for a person are left)."""
        return self._db.matched("block_plan", {"id": plan_id})

    def start_turns(self, plan_id: int, max_parallel: int, solver_caps: dict[str, int]) -> bool:
        """queued -> building: the plan moves in turns from now on, with these limits."""
        return self._db.matched("start_turns", {"id": plan_id, "max_parallel": max_parallel,
                                                "solver_caps": Jsonb(solver_caps)})

    @contextlib.contextmanager
    def turn_locks(self, plan_ids: Sequence[int]) -> Iterator[list[int]]:
        """Held for a batch of turns; yields the plans whose lock was taken (another turn of
        each of the others runs). The turns' statements go over the locks' connection."""
        with self._db.holding("lock_plan_turns", "unlock_plan_turns",
                              sorted(set(plan_ids))) as locked:
            yield locked

    def queued(self, *, limit: int) -> Sequence[int]:
        """Plans queued for building, oldest first."""
        return [r["id"] for r in self._db.fetch_all("queued_plans", {"limit": limit})]

    def want_turn(self, plan_id: int) -> None:
        """Ask the plan's running turn to go round once more."""
        self._db.matched("want_turn", {"id": plan_id})

    def want_turns(self, plan_ids: Sequence[int]) -> None:
        """Ask for the plans' turns (their wishes, taken by the turns a job then runs)."""
        with self._db.session() as cur:
            cur.execute(queries.get("want_turns"), {"ids": list(plan_ids)})

    def turns_wanted(self, plan_ids: Sequence[int]) -> list[int]:
        """Those of ``plan_ids`` whose wish for a turn no turn has taken yet."""
        return [r["id"] for r in self._db.fetch_all("turns_wanted", {"ids": list(plan_ids)})]

    def take_turn_wishes(self, plan_ids: Sequence[int]) -> list[models.PlanRecord]:
        """The plans a turn was asked for since the last call (their wishes consumed), without
        their documents."""
        return [models.PlanRecord.from_row(r)
                for r in self._db.fetch_all("take_turn_wishes", {"ids": list(plan_ids)})]

    def turn_failed(self, plan_id: int) -> int:
        """Count a turn that ended with an unexpected error; the count of such turns in a row."""
        rows = self._db.fetch_all("turn_failed", {"id": plan_id})
        return int(rows[0]["turn_failures"]) if rows else 0

    def fail_poisoned(self, plan_id: int, error: str) -> None:
        """queued | building | paused -> failed with ``error``; its pending steps cancelled."""
        self._db.fetch_all("fail_poisoned_plan", {"id": plan_id, "error": error})

    def turned(self, plan_ids: Sequence[int]) -> None:
        """Turns of the plans ended well."""
        if plan_ids:
            with self._db.session() as cur:
                cur.execute(queries.get("plans_turned"), {"ids": list(plan_ids)})

    def pause(self, plan_id: int) -> None:
        """queued | building | blocked -> paused."""
        self._transition("pause_plan", plan_id, "queued, building or blocked")

    def resume(self, plan_id: int) -> None:
        """paused | blocked -> queued; the caller enqueues the build."""
        self._transition("resume_plan", plan_id, "paused or blocked")

    def hand_back(self, plan_id: int, worker: str) -> bool:
        """building -> queued by its own worker (which is stopping)."""
        return self._db.matched("hand_back_plan", {"id": plan_id, "worker": worker})

    def heartbeat(self, plan_id: int, worker: str) -> bool:
        """False when the plan is no longer this worker's to build (cancelled, taken over)."""
        return self._db.matched("heartbeat_plan", {"id": plan_id, "worker": worker})

    def status(self, plan_id: int) -> models.PlanStatus:
        with self._db.session() as cur:
            cur.execute(queries.get("plan_status"), {"id": plan_id})
            row = cur.fetchone()
        if row is None:
            raise exceptions.NotFound(f"plan {plan_id} does not exist")
        return models.PlanStatus(row["status"])

    def finish(
        self, plan_id: int, *, built: bool, build: dict[str, Any], error: str | None
    ) -> bool:
        """building -> built | failed."""
        with self._db.session() as cur:
            cur.execute(queries.get("finish_plan"), {
                "id": plan_id, "status": "built" if built else "failed",
                "build": Jsonb(build), "error": error,
            })
            return cur.fetchone() is not None

    def cancel(self, plan_id: int, reason: str) -> None:
        """Stop a plan: no new steps start; the build worker cancels running ones."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("cancel_plan"), {"id": plan_id, "reason": reason})
            if cur.fetchone() is not None:
                cur.execute(queries.get("cancel_pending_steps"),
                            {"plan_id": plan_id, "reason": reason})
                return
        current = self.get(plan_id)
        raise exceptions.InvalidTransition(f"plan {plan_id} is {current.status}: nothing to cancel")

    def retry(self, plan_id: int) -> int:
        """failed -> queued; failed, skipped and cancelled steps get a fresh attempt. Returns
        how many steps will run again."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("retry_plan"), {"id": plan_id})
            if cur.fetchone() is not None:
                cur.execute(queries.get("latest_steps"), {"plan_id": plan_id})
                again = 0
                for row in cur.fetchall():
                    if row["status"] in ("failed", "skipped", "cancelled"):
                        cur.execute(queries.get("next_attempt"),
                                    NextAttempt().params(row["id"], 0.0, True))
                        again += 1
                return again
        current = self.get(plan_id)
        raise exceptions.InvalidTransition(f"plan {plan_id} is {current.status}, not failed")

    def stale(self, *, stale: float, queued: float) -> builtins.list[tuple[int, str]]:
        rows = self._db.fetch_all("stale_plans", {"stale": stale, "queued": queued})
        return [(r["id"], r["status"]) for r in rows]

    def queue_ready(self) -> builtins.list[int]:
        """ready_for_build -> queued for all (auto_build is on); the caller enqueues them."""
        return [r["id"] for r in self._db.fetch_all("queue_ready_plans", {})]

    def prune(self, older_than: float) -> tuple[builtins.list[int], builtins.list[int], int]:
        """Delete finished plans, inputs and events older than ``older_than`` seconds;
        (input ids, plan ids, events deleted)."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("prune"), {"older": older_than})
            row = cur.fetchone()
            assert row is not None
            _event(cur, "pruned", f"pruned {len(row['inputs'])} inputs, {len(row['plans'])} "
                   f"plans, {row['events']} events older than {durations.format_seconds(older_than)}",
                   data={"inputs": len(row["inputs"]), "plans": len(row["plans"]),
                         "events": row["events"]})
            return list(row["inputs"]), list(row["plans"]), int(row["events"])

    def touch(self, plan_id: int) -> bool:
        return self._db.matched("touch_plan", {"id": plan_id})

    def set_flow_job(self, plan_id: int, worker: str, job_id: Any) -> bool:
        """Record the job id of the plan's flow run (before it is requested); False when the
        plan has one already or is not this worker's."""
        return self._db.matched("set_flow_job", {"id": plan_id, "worker": worker,
                                                 "job_id": job_id})

    def flow_job(self, plan_id: int) -> Any:
        rows = self._db.fetch_all("get_flow_job", {"id": plan_id})
        return rows[0]["flow_job_id"] if rows else None


class StepRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, plan_id: int, steps: list[dict[str, Any]]) -> None:
        """First attempts of a plan's tasks (idempotent)."""
        with self._db.session() as cur:
            cur.execute(queries.get("create_steps"), {"plan_id": plan_id, "steps": Jsonb(steps)})

    def latest(self, plan_id: int) -> dict[str, models.Step]:
        with self._db.session() as cur:
            cur.execute(queries.get("latest_steps"), {"plan_id": plan_id})
            return {r["task_id"]: models.Step.from_row(r) for r in cur.fetchall()}

    def latest_of(self, plan_ids: Sequence[int]) -> dict[int, dict[str, models.Step]]:
        """The latest step of every task of each plan (a plan without steps is left out)."""
        out: dict[int, dict[str, models.Step]] = {}
        for r in self._db.fetch_all("latest_steps_of", {"ids": list(plan_ids)}):
            out.setdefault(r["plan_id"], {})[r["task_id"]] = models.Step.from_row(r)
        return out

    def states(self, plan_id: int) -> dict[str, models.Step]:
        """The latest step of every task, without its args, result and observations."""
        with self._db.session() as cur:
            cur.execute(queries.get("latest_step_states"), {"plan_id": plan_id})
            return {r["task_id"]: models.Step.from_row(r) for r in cur.fetchall()}

    def all(self, plan_id: int) -> list[models.Step]:
        return [models.Step.from_row(r) for r in self._db.fetch_all("all_steps", {"plan_id": plan_id})]

    def dispatch(self, step_id: int, job_id: Any) -> bool:
        """pending -> dispatched with ``job_id``, committed before the job is submitted."""
        return self._db.matched("dispatch_step", {"id": step_id, "job_id": job_id})

    def needs_qa(self, step_id: int, qa_job_id: Any, result: Any) -> bool:
        """dispatched | running -> needs_qa, with the check's job id (before it is sent)."""
        return self._db.matched("step_needs_qa", {"id": step_id, "qa_job_id": qa_job_id,
                                                  "result": Jsonb(result)})

    def finish(
        self, step_id: int, status: models.StepStatus, *, result: Any = None,
        error: str | None = None, retry_in: float | None = None,
        error_type: str | None = None, question: str | None = None,
        next_attempt: NextAttempt | None = None,
    ) -> bool:
        """Record an attempt's outcome; with ``retry_in`` the next attempt is created in the
        same transaction, pending for that many seconds (``next_attempt`` says how it
        differs)."""
        params = {"id": step_id, "status": status,
                  "result": None if result is None else Jsonb(result), "error": error,
                  "error_type": error_type, "question": question}
        if retry_in is None:  # one statement, its own transaction
            return self._db.matched("finish_step", params)
        with self._db.transaction() as cur:
            cur.execute(queries.get("finish_step"), params)
            if cur.fetchone() is None:
                return False
            if retry_in is not None:
                cur.execute(queries.get("next_attempt"),
                            (next_attempt or NextAttempt()).params(step_id, retry_in, False))
            return True

    def decide(self, step_id: int, decision: str, *, note: str | None = None,
               extra: dict[str, Any] | None = None) -> bool:
        """A person's decision on a blocked step (guarded: False when it is not blocked).
        retry / answer: a fresh attempt with ``extra`` merged into its args; skip: dependents
        go on as if it were done; fail: it fails for good."""
        status = "skipped" if decision == "skip" else "failed"
        record = {"decision": decision, **({"note": note} if note else {})}
        with self._db.transaction() as cur:
            cur.execute(queries.get("decide_step"), {
                "id": step_id, "status": status, "decision": Jsonb(record),
                "error": "skipped by a person" if decision == "skip" else None})
            if cur.fetchone() is None:
                return False
            if decision in ("retry", "answer"):
                cur.execute(queries.get("next_attempt"),
                            NextAttempt(extra=extra).params(step_id, 0.0, True))
            return True

    def skip(self, plan_id: int, task_ids: list[str], reason: str) -> list[str]:
        with self._db.session() as cur:
            cur.execute(queries.get("skip_steps"),
                        {"plan_id": plan_id, "tasks": task_ids, "reason": reason})
            return [r["task_id"] for r in cur.fetchall()]

    def mark_ready(self, step_ids: list[int]) -> None:
        """These pending steps have every dependency done: they compete for slots now."""
        if step_ids:
            self._db.matched("mark_ready", {"ids": step_ids})

    def clear_observed(self, step_id: int) -> None:
        self._db.matched("clear_observed", {"id": step_id})

    def observe(self, seen: list[tuple[int, models.StepStatus, dict[str, Any]]]
                     ) -> dict[int, int]:
        """Record what the tracker saw some steps' jobs end with (or vanish), in one statement:
        step id -> plan id of those recorded (not those that moved on, or wait already)."""
        if not seen:
            return {}
        rows = self._db.fetch_all("observe_steps", {"rows": Jsonb([
            {"id": step_id, "status": str(status), "observed": observed}
            for step_id, status, observed in seen])})
        return {int(r["id"]): int(r["plan_id"]) for r in rows}

    def running(self, step_ids: list[int]) -> None:
        """dispatched -> running for these steps."""
        if step_ids:
            self._db.fetch_all("steps_running", {"ids": step_ids})

    def cancelled_among(self, step_ids: list[int]) -> list[dict[str, Any]]:
        """The steps of ``step_ids`` that are cancelled, with their job ids."""
        return self._db.fetch_all("cancelled_among", {"ids": step_ids})

    def fleet_active(self) -> list[dict[str, Any]]:
        """Every step whose job runs, fleet-wide."""
        return self._db.fetch_all("fleet_active_steps", {})

    def cancel_pending(self, plan_id: int, reason: str) -> None:
        with self._db.session() as cur:
            cur.execute(queries.get("cancel_pending_steps"), {"plan_id": plan_id, "reason": reason})


class SourceRepository:
    """Sources: the versions (inputs) of each, and the plan its next version revises."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def history(self, source: str) -> models.SourceHistory:
        """A source's versions, oldest first, and its current plan."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("source_versions"), {"source": source})
            versions = [models.SourceVersion.from_row(r) for r in cur.fetchall()]
            cur.execute(queries.get("source_current_plan"), {"source": source})
            row = cur.fetchone()
        return models.SourceHistory(source, versions,
                                    None if row is None else models.PlanRecord.from_row(row))

    def current_plan(self, source: str) -> models.PlanRecord | None:
        """The plan a new version of ``source`` revises (with its document), if any."""
        rows = self._db.fetch_all("source_plan", {"source": source})
        return models.PlanRecord.from_row(rows[0]) if rows else None

    def named(self, filename: str) -> list[str]:
        """The sources with an input of this file name, the most recently recorded first."""
        return [r["source"] for r in self._db.fetch_all("sources_named",
                                                        {"filename": filename})]

    def resolve(self, text: str) -> list[str]:
        """The sources ``text`` names: itself when it is a source key with versions, else
        the sources of inputs with that file name (none: an empty list)."""
        key, name = sources.parse_argument(text)
        if key is not None and self._db.fetch_all("source_versions", {"source": key}):
            return [key]
        return self.named(name)


class RevisionRepository:
    """Revisions of plans by newer versions of their sources."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, plan_id: int, input_id: int, plan: dict[str, Any], summary: dict[str, Any],
            digest: str, *, wait: bool, job: str | None,
            warnings: list[dict[str, Any]] | None = None) -> int | None:
        """planning -> planned as a revision of ``plan_id`` (``wait``: for a person), which
        supersedes the plan's revisions not applied yet; None when the input is not planning
        (or the plan has ended meanwhile)."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("add_revision"), {
                "plan_id": plan_id, "input_id": input_id, "plan": Jsonb(plan),
                "summary": Jsonb(summary), "digest": digest,
                "status": "waiting" if wait else "pending", "job": job,
                "warnings": Jsonb(warnings or [])})
            row = cur.fetchone()
            if row is None:
                return None
            _event(cur, "revision_recorded",
                   f"input {input_id} revises plan {plan_id}"
                   + (" (waits for a person to apply it)" if wait else "")
                   + (f"; {row['superseded']} earlier revision(s) superseded"
                      if row["superseded"] else ""),
                   input_id=input_id, plan_id=plan_id,
                   data={"revision": row["id"], "waits": wait})
            return int(row["id"])

    def get(self, revision_id: int) -> models.RevisionRecord | None:
        rows = self._db.fetch_all("get_revision", {"id": revision_id})
        return models.RevisionRecord.from_row(rows[0]) if rows else None

    def document(self, revision_id: int) -> str:
        """A revision's plan document as JSON text."""
        rows = self._db.fetch_all("revision_document", {"id": revision_id})
        if not rows:
            raise exceptions.NotFound(f"revision {revision_id} does not exist")
        return str(rows[0]["plan"])

    def of_plan(self, plan_id: int) -> list[models.RevisionRecord]:
        return [models.RevisionRecord.from_row(r)
                for r in self._db.fetch_all("plan_revisions", {"plan_id": plan_id})]

    def titles(self, plan_id: int) -> dict[str, str]:
        """Task id -> title across the plan's revisions (the newest revision's title wins)."""
        rows = sorted(self._db.fetch_all("revision_titles", {"plan_id": plan_id}),
                      key=lambda r: r["id"])
        return {r["task_id"]: r["title"] for r in rows if r["title"]}

    def release(self, revision_id: int) -> int:
        """waiting -> pending (a person applies it); its plan's id."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("release_revision"), {"id": revision_id})
            row = cur.fetchone()
            if row is None:
                raise exceptions.InvalidTransition(
                    f"revision {revision_id} does not wait to be applied")
            _event(cur, "revision_released", f"revision {revision_id} is to be applied",
                   plan_id=row["plan_id"], data={"revision": revision_id})
            return int(row["plan_id"])

    def apply(self, plan_id: int, revision_id: int, writes: Any, diff: dict[str, Any], *,
              max_parallel: int, solver_caps: dict[str, int],
              remaining: dict[str, Any] | None = None) -> bool:
        """Carry out a revision's writes (a :class:`planfleet.workers.revising.Writes`) and
        give the plan the version's document, in one transaction; False (nothing written)
        when the revision is no longer pending."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("applied_revision"), {
                "id": revision_id, "diff": Jsonb(diff), "max_parallel": max_parallel,
                "remaining": Jsonb(remaining),
                "solver_caps": Jsonb(solver_caps) if solver_caps else None})
            row = cur.fetchone()
            if row is None:
                return False
            for step_id, reason, removed in writes.close:
                cur.execute(queries.get("close_step"),
                            {"id": step_id, "reason": reason, "removed": removed})
            for step_id, d in writes.attempts:
                cur.execute(queries.get("revised_attempt"), _definition(d, step_id))
            for step_id, d in writes.revise:
                cur.execute(queries.get("revise_pending_step"), _definition(d, step_id))
            if writes.create:
                cur.execute(queries.get("create_steps"),
                            {"plan_id": plan_id, "steps": Jsonb(writes.create)})
            for step_id, reason in writes.removed:
                cur.execute(queries.get("mark_removed"), {"id": step_id, "removed": reason})
            for step_id, d in writes.rerun:
                cur.execute(queries.get("rerun_after"), {"id": step_id, "rerun": Jsonb(d)})
            if writes.stale:
                cur.execute(queries.get("mark_stale"), {"ids": writes.stale})
            if writes.unready:
                cur.execute(queries.get("unready_steps"), {"ids": writes.unready})
            counts = ", ".join(f"{len(diff[k])} {k}" for k in (
                "added", "removed", "done_in_source", "changed", "kept", "adopted", "stale")
                if diff.get(k))
            _event(cur, "plan_revised",
                   f"plan {plan_id} revision {row['revision']}: {counts or 'nothing changed'}",
                   plan_id=plan_id, data={"revision": revision_id, **diff})
            return True

    def settle(self, step: models.Step, status: models.StepStatus, error: str | None) -> bool:
        """Record the end of a step's job that counts for nothing now (its task left the
        source, or runs again: then its new attempt is created in the same transaction)."""
        observed = step.observed or {}
        with self._db.transaction() as cur:
            cur.execute(queries.get("settle_step"), {
                "id": step.id, "status": status, "error": error,
                "result": Jsonb({"value": observed.get("result"), "link": observed.get("link"),
                                 "duration": observed.get("duration")})})
            if cur.fetchone() is None:
                return False
            if step.rerun is not None:
                cur.execute(queries.get("revised_attempt"), _definition(step.rerun, step.id))
            return True


def _definition(d: dict[str, Any], step_id: int) -> dict[str, Any]:
    return {"id": step_id, "script": d["script"], "solver": d["solver"], "args": Jsonb(d["args"]),
            "priority": d["priority"], "rank": d["rank"], "alone": d["alone"],
            "timeout": d["timeout"]}


@dataclasses.dataclass(frozen=True)
class FleetLoad:
    """What the fleet runs and may start, read in one dispatch transaction."""

    ready: list[dict[str, Any]]
    #: (plan_id, solver, alone) -> steps running, for the plans of ``ready`` (all plans when
    #: read by :meth:`FleetRepository.load`)
    active: dict[tuple[int, str | None, bool], int]
    plans: dict[int, dict[str, Any]]
    solver_caps: dict[str, int]
    max_running: int
    #: steps running now fleet-wide, per solver
    busy: dict[str, int]
    #: steps running now fleet-wide
    running: int


#: How many ready steps a dispatch round reads beyond the slots free (see dispatch_candidates).
DISPATCH_MARGIN = 64
_EVERY = 1 << 40


class FleetRepository:
    """The fleet's shared capacity: solvers, and the choice of steps that start."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def load(self) -> FleetLoad:
        """Every ready step and everything running, outside the dispatch lock (for the UI,
        metrics and why steps wait)."""
        with self._db.session() as cur:
            cur.execute(queries.get("ready_steps"))
            ready = cur.fetchall()
            cur.execute(queries.get("active_load"))
            active = {(r["plan_id"], r["solver"], r["alone"]): r["n"] for r in cur.fetchall()}
            busy: dict[str, int] = {}
            for (_, solver, _), n in active.items():
                if solver is not None:
                    busy[solver] = busy.get(solver, 0) + n
            return self._rest(cur, ready, active, busy, sum(active.values()))

    @staticmethod
    def _rest(cur: Cursor, ready: list[dict[str, Any]],
              active: dict[tuple[int, str | None, bool], int], busy: dict[str, int],
              running: int, max_running: int | None = None) -> FleetLoad:
        ids = sorted({r["plan_id"] for r in ready} | {p for p, _, _ in active})
        cur.execute(queries.get("plan_limits"), {"ids": ids})
        plans = {r["id"]: r for r in cur.fetchall()}
        cur.execute(queries.get("solver_capacities"))
        caps = {r["name"]: r["capacity"] for r in cur.fetchall()}
        if max_running is None:
            cur.execute(queries.get("get_settings"))
            row = cur.fetchone()
            assert row is not None
            max_running = int(row["max_running"])
        return FleetLoad(ready, active, plans, caps, max_running, busy, running)

    def dispatch(
        self, choose: Callable[[FleetLoad], list[tuple[int, uuid.UUID]]], *,
        cap: Callable[[int], int], aging: float, cooldown: float,
    ) -> list[dict[str, Any]]:
        """Under the fleet's dispatch lock: read the load, let ``choose`` pick (step id, job id)
        pairs, mark those steps dispatched, all in one transaction; the claimed steps.

        ``cap``: the steps that may run at once fleet-wide, given ``max_running``. Only the
        ready steps a slot could take are read, and only a few more of them than there are free
        slots (see ``dispatch_candidates``)."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("lock_fleet_dispatch"))
            cur.execute(queries.get("fleet_busy"))
            by_solver = {r["solver"]: r["n"] for r in cur.fetchall()}
            running = sum(by_solver.values())
            busy = {s: n for s, n in by_solver.items() if s is not None}
            cur.execute(queries.get("get_settings"))
            settings = cur.fetchone()
            assert settings is not None
            free = cap(settings["max_running"]) - running
            if free <= 0:
                return []
            params = {"free": free, "margin": DISPATCH_MARGIN, "aging": aging,
                      "cooldown": cooldown}
            picks = self._choose(cur, choose, params, busy, running, settings["max_running"])
            if picks is None:  # the margin was not enough: every candidate
                picks = self._choose(cur, choose, {**params, "margin": _EVERY}, busy, running,
                                     settings["max_running"])
            if not picks:
                return []
            cur.execute(queries.get("claim_steps"), {"claims": Jsonb(
                [{"id": step_id, "job": str(job)} for step_id, job in picks])})
            claimed = cur.fetchall()
            cur.execute(queries.get("plans_served"),
                        {"ids": sorted({r["plan_id"] for r in claimed})})
            return claimed

    def _choose(
        self, cur: Cursor, choose: Callable[[FleetLoad], list[tuple[int, uuid.UUID]]],
        params: dict[str, Any], busy: dict[str, int], running: int, max_running: int,
    ) -> list[tuple[int, uuid.UUID]] | None:
        """``choose`` over the candidates the window holds; None when a candidate left out of it
        might have been chosen (the window was full for a solver, or for the fleet, whose free
        slots were not all taken). Otherwise the choice is the one over every candidate: those
        left out come after all that were read, when their solver (or the fleet) is full."""
        cur.execute(queries.get("dispatch_candidates"), params)
        ready = cur.fetchall()
        if not ready:
            return []
        cur.execute(queries.get("plans_active_load"),
                    {"ids": sorted({r["plan_id"] for r in ready})})
        active = {(r["plan_id"], r["solver"], r["alone"]): r["n"] for r in cur.fetchall()}
        picks = choose(self._rest(cur, ready, active, busy, running, max_running))
        if params["margin"] == _EVERY:
            return picks
        chosen = {step_id for step_id, _ in picks}
        if len(ready) >= params["free"] + params["margin"] and len(chosen) < params["free"]:
            return None
        read: dict[str, int] = {}
        taken: dict[str, int] = {}
        limit: dict[str, int] = {}
        for r in ready:
            s = r["solver"]
            if r["solver_free"] is None:
                continue
            limit[s] = max(r["solver_free"], 0)
            read[s] = read.get(s, 0) + 1
            taken[s] = taken.get(s, 0) + (r["id"] in chosen)
        if any(read[s] >= limit[s] + params["margin"] and taken[s] < limit[s] for s in read):
            return None
        return picks

    def solvers(self) -> list[dict[str, Any]]:
        return self._db.fetch_all("list_solvers", {})

    def set_solver(self, name: str, capacity: int, script: str | None = None) -> dict[str, Any]:
        with self._db.transaction() as cur:
            cur.execute(queries.get("set_solver"),
                        {"name": name, "capacity": capacity, "script": script})
            row = cur.fetchone()
            assert row is not None
            _event(cur, "solver_set", f"solver {name}: capacity {capacity}"
                   + (f", script {script}" if script else ""),
                   data={"name": name, "capacity": capacity, "script": script})
            return row

    def remove_solver(self, name: str) -> None:
        with self._db.transaction() as cur:
            cur.execute(queries.get("remove_solver"), {"name": name})
            if cur.fetchone() is None:
                raise exceptions.NotFound(f"solver {name} is not declared")
            _event(cur, "solver_removed", f"solver {name} removed", data={"name": name})


class MetricsRepository:
    """Aggregates for Prometheus, read from Postgres at scrape time (right however many
    worker processes there are)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def step_counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._db.fetch_all("count_steps_by_status", {})}

    def step_durations(self, bounds: Sequence[float]) -> list[tuple[float, int]]:
        rows = self._db.fetch_all("step_duration_buckets", {"bounds": list(bounds)})
        return [(r["le"], r["n"]) for r in rows]

    def totals(self) -> dict[str, Any]:
        (row,) = self._db.fetch_all("metrics_totals", {})
        return dict(row)


class CircuitRepository:
    """Circuit breakers per script (shared by every build worker)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, scripts: list[str]) -> dict[str, models.Circuit]:
        rows = self._db.fetch_all("get_circuits", {"scripts": scripts})
        return {r["script"]: models.Circuit.from_row(r) for r in rows}

    def all(self) -> list[models.Circuit]:
        return [models.Circuit.from_row(r) for r in self._db.fetch_all("list_circuits", {})]

    def failure(self, script: str, error: str, *, threshold: int,
                force: bool = False) -> tuple[str, int, bool]:
        """Count a failure; (state, consecutive failures, whether this one opened it)."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("circuit_failure"), {
                "script": script, "error": error[:1000], "threshold": threshold,
                "force": force})
            row = cur.fetchone()
            assert row is not None
            if row["just_opened"]:
                _event(cur, "circuit_opened",
                       f"circuit of {script} opened after {row['failures']} failures: "
                       f"{error[:300]}", data={"script": script, "failures": row["failures"]})
            return row["state"], row["failures"], bool(row["just_opened"])

    def success(self, script: str) -> str | None:
        """Close the circuit; the state it was in when that changed anything, else None."""
        with self._db.transaction() as cur:
            cur.execute(queries.get("circuit_success"), {"script": script})
            row = cur.fetchone()
            if row is None:
                return None
            if row["was"] != "closed":
                _event(cur, "circuit_closed", f"circuit of {script} closed after a success",
                       data={"script": script})
            return str(row["was"])

    def trial(self, script: str, cooldown: float) -> bool:
        """open (for ``cooldown`` s) -> half_open: True when the caller may send one trial."""
        return self._db.matched("circuit_trial", {"script": script, "cooldown": cooldown})


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
        with self._db.session() as cur:
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
        with self._db.session() as cur:
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
        self.plans = PlanRepository(db)
        self.steps = StepRepository(db)
        self.events = EventRepository(db)
        self.circuits = CircuitRepository(db)
        self.metrics = MetricsRepository(db)
        self.fleet = FleetRepository(db)
        self.sources = SourceRepository(db)
        self.revisions = RevisionRepository(db)

    @classmethod
    def from_url(cls, url: str, *, pool_max: int = defaults.DB_POOL_MAX) -> Store:
        return cls(Database(url, max_size=pool_max))

    def close(self) -> None:
        self.db.close()
