"""The ``planfleet`` command line (typer). Every option also reads a ``PLANFLEET_*`` variable."""

from __future__ import annotations

import enum
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from planfleet import actions, confine, durations, exceptions, logs, models
from planfleet.backoff import Backoff
from planfleet.config import Config

#: Exit codes.
RET_OK = 0
RET_ERROR = 1
RET_INVALID = 2  # bad input (a task list, an argument)
RET_CONFLICT = 3  # the record is not in a state that allows the action
RET_UNAVAILABLE = 4  # Postgres or Redis did not answer

#: Help text as plain text, laid out by click (typer's rich panels showed each option's type,
#: ``--help <bool>`` included, and kept the docstrings' line breaks).
PLAIN: dict[str, Any] = {"rich_markup_mode": None, "pretty_exceptions_enable": False}

app = typer.Typer(
    no_args_is_help=True, add_completion=False, **PLAIN,
    help="planfleet: task-list files in, dependency-aware plans out, built by Windmill-style "
         "scripts. Every option also reads a PLANFLEET_* variable.",
)
settings_app = typer.Typer(help="Show or change the operator settings (the settings row).",
                           **PLAIN)
app.add_typer(settings_app, name="settings")
pull_app = typer.Typer(no_args_is_help=True, **PLAIN,
                       help="Write a task file from an issue tracker into the watch dir.")
app.add_typer(pull_app, name="pull")
solvers_app = typer.Typer(help="The fleet's solvers: capacity shared by every plan.", **PLAIN)
app.add_typer(solvers_app, name="solvers")
windmill_app = typer.Typer(no_args_is_help=True, help="Windmill assets.", **PLAIN)
app.add_typer(windmill_app, name="windmill")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def _runtime(*, wait: bool = False) -> Any:
    """The runtime; a long-running service (``wait``) waits for Postgres, a command fails."""
    from planfleet import runtime

    logs.configure(Config().log_format)
    try:
        return runtime.open_runtime(wait=wait)
    except exceptions.DatabaseUnavailable as exc:
        raise _fail(str(exc), RET_UNAVAILABLE) from exc


#: The kinds of a revision's diff, in the order they are shown.
_DIFF_KINDS = ("added", "removed", "done_in_source", "changed", "kept", "adopted", "stale")
_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}


def _parse_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise _fail(f"expected on/off, got {value!r}", RET_INVALID)


_T = TypeVar("_T")

_WAIT_HELP = "Wait up to this many seconds for a match (a file is recorded once it is stable)."


def _poll(fetch: Callable[[], _T], done: Callable[[_T], bool], wait: float) -> tuple[_T, bool]:
    """``fetch()`` until ``done`` says yes or ``wait`` seconds passed; the last value and
    whether it was done."""
    deadline = time.monotonic() + wait
    waits = Backoff(first=0.05, cap=0.5)
    while True:
        value = fetch()
        if done(value):
            return value, True
        left = deadline - time.monotonic()
        if left <= 0:
            return value, False
        time.sleep(min(waits.next(), left))


def _waited_in_vain(what: str, wait: float) -> typer.Exit:
    err.print(f"{what} after {wait:g} s", markup=False)
    return typer.Exit(RET_ERROR)


def _print_settings(s: models.Settings, watch_dir_default: Path) -> None:
    table = Table("setting", "value", box=None)
    table.add_row("auto_plan", "on" if s.auto_plan else "off")
    table.add_row("auto_build", "on" if s.auto_build else "off")
    table.add_row("watch_dir", s.watch_dir or f"{watch_dir_default} (from WATCH_DIR)")
    table.add_row("max_parallel", str(s.max_parallel))
    table.add_row("max_running", str(s.max_running))
    out.print(table)


@app.command()
def migrate() -> None:
    """Create the database if needed and apply pending migrations."""
    from planfleet.schema import migrate as m

    logs.configure(Config().log_format)
    config = Config()
    try:
        m.ensure_database(config.database_url)
        applied = m.migrate(config.database_url)
    except exceptions.DatabaseUnavailable as exc:
        raise _fail(str(exc), RET_UNAVAILABLE) from exc
    out.print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@settings_app.callback(invoke_without_command=True)
def settings_show(ctx: typer.Context) -> None:
    """Show the settings."""
    if ctx.invoked_subcommand is not None:
        return
    rt = _runtime()
    _print_settings(rt.store.settings.get(), rt.config.watch_dir)


class SettingName(enum.StrEnum):
    auto_plan = "auto_plan"
    auto_build = "auto_build"
    watch_dir = "watch_dir"
    max_parallel = "max_parallel"
    max_running = "max_running"


@settings_app.command("set")
def settings_set(
    name: Annotated[SettingName, typer.Argument(help="Which setting.")],
    value: Annotated[str, typer.Argument(help="on/off, a number, or a folder ('' clears it).")],
) -> None:
    """Change one setting; every running process sees it within a second."""
    rt = _runtime()
    changes: dict[str, Any] = {}
    if name in (SettingName.auto_plan, SettingName.auto_build):
        changes[name.value] = _parse_bool(value)
    elif name in (SettingName.max_parallel, SettingName.max_running):
        try:
            n = int(value)
        except ValueError:
            raise _fail(f"{name.value} must be a whole number, got {value!r}",
                        RET_INVALID) from None
        if n < 1:
            raise _fail(f"{name.value} must be at least 1", RET_INVALID)
        changes[name.value] = n
    else:
        changes["set_watch_dir"] = True
        try:
            changes["watch_dir"] = str(confine.watch_dir(
                value, confine.watch_root(rt.config))) if value else None
        except exceptions.InvalidSetting as exc:
            raise _fail(str(exc), RET_INVALID) from None
    _print_settings(rt.store.settings.update(**changes), rt.config.watch_dir)


@app.command()
def watch(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", envvar="PLANFLEET_WATCH_DIR", help="Folder to watch."),
    ] = None,
) -> None:
    """Run the watcher: record stable task-list files and enqueue them for planning."""
    from planfleet.watcher import Watcher

    config = Config() if directory is None else Config(watch_dir=directory)
    rt = _runtime(wait=True)
    rt.config = config
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Watcher(config, rt.store, rt.queues).run(stop)


@app.command()
def inputs(
    status: Annotated[models.InputStatus | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
    wait: Annotated[float, typer.Option(min=0, help=_WAIT_HELP)] = 0,
) -> None:
    """List recorded inputs, newest first."""
    rt = _runtime()
    rows, found = _poll(lambda: rt.store.inputs.list(status=status, limit=limit), bool, wait)
    if as_json:
        # one JSON object a line, unwrapped (rich would indent and wrap it)
        for r in rows:
            sys.stdout.write(json.dumps({
                "id": r.id, "filename": r.filename, "status": r.status, "size": r.size,
                "digest": r.digest, "error": r.error, "warnings": r.warnings,
                "created_at": r.created_at.isoformat(),
            }) + "\n")
        if wait and not found:
            raise _waited_in_vain("no input" + (f" {status}" if status else ""), wait)
        return
    table = Table("id", "file", "status", "size", "created", "warnings", "error")
    for r in rows:
        table.add_row(
            str(r.id),
            r.filename,
            str(r.status),
            str(r.size),
            r.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(len(r.warnings)) if r.warnings else "",
            (r.error or "")[:80],
        )
    out.print(table)
    if wait and not found:
        raise _waited_in_vain("no input" + (f" {status}" if status else ""), wait)


@app.command("input")
def input_show(
    input_id: Annotated[int, typer.Argument(help="The input's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """One input: its status, why it failed (the planner's problems), its warnings."""
    from planfleet.api import routes

    rt = _runtime()
    try:
        got, problems, plans, _ = routes.input_detail(rt, input_id, events=200)
    except exceptions.NotFound as exc:
        raise _fail(str(exc), RET_INVALID) from exc
    if as_json:
        out.print_json(json.dumps({
            "id": got.id, "filename": got.filename, "status": got.status, "error": got.error,
            "problems": problems, "warnings": got.warnings, "plans": [p.id for p in plans]}))
        return
    lines = [f"input {got.id}: {got.filename} ({got.status.value}, {got.size} bytes)"]
    if got.error:
        lines.append(f"error: {got.error}")
        lines += [f"  - {_problem_text(p)}" for p in problems]
    if got.warnings:
        lines.append(f"{len(got.warnings)} warning{'s' if len(got.warnings) != 1 else ''}:")
        lines += [f"  - {_problem_text(w)}" for w in got.warnings]
    lines.append("plans: " + (", ".join(str(p.id) for p in plans) or "none"))
    out.print("\n".join(lines), markup=False, soft_wrap=True)


def _problem_text(p: dict[str, Any]) -> str:
    from planfleet.planner.errors import Problem

    known = {k: p.get(k) for k in ("code", "message", "task", "field", "line")}
    return f"[{known['code']}] {Problem(**{k: v for k, v in known.items()})}"




def _transition(ids: list[int], act: Any, done: str) -> None:
    """Apply ``act`` to each id; refused ones are reported with the reason (exit 3)."""
    code = RET_OK
    for item in ids:
        try:
            act(item)
        except (exceptions.InvalidTransition, exceptions.NotFound) as exc:
            err.print(f"[red]refused:[/red] {escape(str(exc))}", markup=True)
            code = RET_CONFLICT
            continue
        out.print(done.format(id=item))
    raise typer.Exit(code)


@app.command("enqueue-plan")
def enqueue_plan(ids: Annotated[list[int], typer.Argument(help="Input ids.")]) -> None:
    """Queue pending inputs for planning (refused, with the reason, when not pending)."""
    rt = _runtime()

    _transition(ids, lambda input_id: actions.enqueue_plan(rt, input_id),
                "input {id} queued for planning")


@app.command("enqueue-build")
def enqueue_build(ids: Annotated[list[int], typer.Argument(help="Plan ids.")]) -> None:
    """Queue ready plans for building (refused, with the reason, when not ready_for_build)."""
    rt = _runtime()

    _transition(ids, lambda plan_id: actions.enqueue_build(rt, plan_id),
                "plan {id} queued for building")


@app.command()
def replan(ids: Annotated[list[int], typer.Argument(help="Input ids.")]) -> None:
    """Plan inputs again from their stored bytes (planned or failed ones)."""
    rt = _runtime()

    _transition(ids, lambda input_id: actions.replan(rt, input_id),
                "input {id} queued for planning again")


@app.command()
def retry(ids: Annotated[list[int], typer.Argument(help="Plan ids.")]) -> None:
    """Build failed plans again: only their failed and skipped steps run."""
    rt = _runtime()

    def act(plan_id: int) -> None:
        n = actions.retry(rt, plan_id)
        out.print(f"plan {plan_id}: {n} steps will run again")

    _transition(ids, act, "plan {id} queued for building")


@app.command()
def cancel(
    ids: Annotated[list[int], typer.Argument(help="Plan ids.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the plan).")] = "cancelled by a person",
) -> None:
    """Stop plans: nothing new starts, running steps are cancelled."""
    rt = _runtime()
    _transition(ids, lambda plan_id: actions.cancel(rt, plan_id, reason), "plan {id} cancelled")


@app.command()
def pause(ids: Annotated[list[int], typer.Argument(help="Plan ids.")]) -> None:
    """Pause plans: no new step starts; running ones finish."""
    rt = _runtime()
    _transition(ids, lambda plan_id: actions.pause(rt, plan_id), "plan {id} paused")


@app.command()
def resume(ids: Annotated[list[int], typer.Argument(help="Plan ids.")]) -> None:
    """Resume paused (or blocked) plans."""
    rt = _runtime()
    _transition(ids, lambda plan_id: actions.resume(rt, plan_id), "plan {id} queued again")


@app.command()
def decide(
    plan_id: Annotated[int, typer.Argument(help="Plan id.")],
    task_id: Annotated[str, typer.Argument(help="Task id of the blocked step.")],
    decision: Annotated[str, typer.Argument(help="retry, skip, fail or answer.")],
    note: Annotated[str | None, typer.Option(
        help="retry: feedback for the solver; answer: the answer.")] = None,
) -> None:
    """Decide on a step that waits for a person (attempts exhausted, or a question)."""
    rt = _runtime()
    try:
        out.print(actions.decide(rt, plan_id, task_id, decision, note), markup=False)
    except exceptions.NotFound as exc:
        raise _fail(str(exc), RET_CONFLICT) from exc
    except exceptions.InvalidTransition as exc:
        raise _fail(str(exc), RET_CONFLICT) from exc


@app.command()
def plans(
    status: Annotated[models.PlanStatus | None, typer.Option(help="Only this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    wait: Annotated[float, typer.Option(min=0, help=_WAIT_HELP)] = 0,
) -> None:
    """List plans, newest first."""
    rt = _runtime()
    rows, found = _poll(lambda: rt.store.plans.list(status=status, limit=limit), bool, wait)
    table = Table("id", "input", "status", "tasks", "makespan", "created", "error")
    for p in rows:
        table.add_row(str(p.id), str(p.pending_input_id or ""), str(p.status),
                      str(p.summary.get("tasks", "")),
                      durations.format_minutes(p.summary.get("makespan", 0)),
                      p.created_at.strftime("%Y-%m-%d %H:%M:%S"), (p.error or "")[:60])
    out.print(table)
    if wait and not found:
        raise _waited_in_vain("no plan" + (f" {status}" if status else ""), wait)


@app.command()
def history(
    source: Annotated[str, typer.Argument(
        help="A source key (file:NAME, upload:NAME, youtrack:PROJECT?QUERY, key:VALUE) or a "
             "file name (every source with an input of that name).")],
    as_json: Annotated[bool, typer.Option("--json", help="As JSON.")] = False,
) -> None:
    """A source's versions, oldest first: input, when recorded, status, plan, digest."""
    rt = _runtime()
    keys = rt.store.sources.resolve(source)
    if not keys:
        raise _fail(f"no input belongs to a source or has a file name {source!r}",
                    RET_INVALID)
    found = [rt.store.sources.history(key) for key in keys]
    if as_json:
        sys.stdout.write(json.dumps([{
            "source": h.source,
            "current_plan": None if h.current_plan is None else {
                "id": h.current_plan.id, "status": h.current_plan.status.value},
            "versions": [{
                "input_id": v.input.id, "filename": v.input.filename,
                "recorded_at": v.input.created_at.isoformat(), "status": v.input.status.value,
                "plan_id": v.plan_id, "digest": v.input.digest, "error": v.input.error}
                for v in h.versions]} for h in found], indent=1) + "\n")
        return
    for n, h in enumerate(found):
        current = h.current_plan
        out.print(("\n" if n else "") + f"source {h.source}: {len(h.versions)} version"
                  f"{'s' if len(h.versions) != 1 else ''}, current plan "
                  + (f"{current.id} ({current.status.value})" if current else "none"),
                  markup=False, soft_wrap=True)
        table = Table("input", "recorded", "status", "plan", "digest", "file", "error",
                      box=None, pad_edge=False)
        for v in h.versions:
            table.add_row(str(v.input.id), v.input.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                          v.input.status.value, str(v.plan_id or ""),
                          (v.input.digest or "")[:12], v.input.filename,
                          (v.input.error or "")[:60])
        out.print(table)


@app.command("apply-revision")
def apply_revision(
    plan_id: Annotated[int, typer.Argument(help="Plan id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Apply it (without: only show it).")] = False,
) -> None:
    """Show the revision of a plan that waits for a person (a newer version of its source,
    while the fleet does not build on its own); with --yes, apply it."""
    rt = _runtime()
    try:
        waiting, revision = actions.waiting_revision(rt, plan_id)
    except exceptions.InvalidTransition as exc:
        raise _fail(str(exc), RET_INVALID) from exc
    out.print(f"plan {plan_id}: revision {waiting.id} from input {waiting.input_id}",
              markup=False)
    for kind, tasks in revision.summary().items():
        if tasks:
            out.print(f"  {kind}: {', '.join(tasks)}", markup=False, soft_wrap=True)
    if not yes:
        out.print("not applied: run again with --yes to apply it", markup=False)
        return
    try:
        actions.apply_revision(rt, plan_id, waiting.id)
    except exceptions.InvalidTransition as exc:
        raise _fail(str(exc), RET_INVALID) from exc
    out.print(f"plan {plan_id}: revision {waiting.id} will be applied by its next turn",
              markup=False)


@app.command()
def show(
    plan_id: Annotated[int, typer.Argument(help="Plan id.")],
    wait: Annotated[float, typer.Option(
        min=0, help="Wait up to this many seconds for the plan to exist and stop moving "
                    "(built, failed, cancelled, or waiting for a person).")] = 0,
) -> None:
    """A plan's steps: states, attempts, timings."""
    rt = _runtime()

    def fetch() -> models.PlanRecord | None:
        try:
            return rt.store.plans.get(plan_id)
        except exceptions.NotFound:
            return None

    found, settled = _poll(fetch, lambda p: p is not None and not p.status.moving, wait)
    if found is None:
        if wait:
            raise _fail(f"plan {plan_id} not found after {wait:g} s", RET_ERROR)
        raise _fail(f"plan {plan_id} does not exist", RET_CONFLICT)
    p = found
    s = p.summary
    out.print(f"plan {p.id} ({p.status}) from input {p.pending_input_id}: {s.get('tasks')} tasks, "
              f"makespan {durations.format_minutes(s.get('makespan'))} (lower bound "
              f"{durations.format_minutes(s.get('lower_bound'))})", markup=False)
    if p.source:
        out.print(f"source {p.source} (its versions: planfleet history)", markup=False,
                  soft_wrap=True)
    left = (p.plan or {}).get("remaining")
    if left:
        out.print(f"revised: {len(left['schedule'])} tasks remain, the last ending at "
                  f"{durations.format_minutes(left['makespan'])} (from the plan's first step)",
                  markup=False, soft_wrap=True)
    for r in rt.store.revisions.of_plan(plan_id):
        counts = ", ".join(f"{len(v)} {k}" for k, v in (r.diff or {}).items()
                           if k in _DIFF_KINDS and v)
        when = r.applied_at or r.created_at
        out.print(f"revision {r.id} from input {r.input_id}: {r.status} "
                  f"{when.strftime('%Y-%m-%d %H:%M:%S')}" + (f" ({counts})" if counts else "")
                  + (f"  -> planfleet apply-revision {plan_id}" if r.status == "waiting" else ""),
                  markup=False, soft_wrap=True)
    if p.error:
        out.print(f"error: {p.error}", markup=False)
    # fits the terminal (80 columns too): the task id folds, the error gets what is left of
    # the line and is cut with an ellipsis
    steps = rt.store.steps.all(plan_id)
    task_w = min(24, max([4, *(len(st.task_id) for st in steps)]))
    labels = [str(st.status) + (" (stale)" if st.stale else "") + (
        {"done_in_source": " (done)"}.get(st.removed, " (removed)") if st.removed else "")
        for st in steps]
    fixed = (task_w + len("try") + max([len("status"), *map(len, labels)]) + len("00:00:00")
             + len("10h59m"))
    table = Table(box=None, pad_edge=False)
    table.add_column("task", overflow="fold", width=task_w)
    table.add_column("try", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("took", justify="right", no_wrap=True)
    table.add_column("error", overflow="ellipsis", no_wrap=True,
                     max_width=max(10, out.width - fixed - 2 * 5 - 1))
    for st, status in zip(steps, labels, strict=True):
        secs = (st.finished_at - st.started_at).total_seconds() if (
            st.started_at and st.finished_at) else None
        table.add_row(st.task_id, str(st.attempt), status,
                      st.started_at.strftime("%H:%M:%S") if st.started_at else "",
                      durations.format_seconds(secs), st.error or "")
    out.print(table)
    links = [(st.task_id, st.attempt, st.result.get("link")) for st in rt.store.steps.all(plan_id)
             if isinstance(st.result, dict) and st.result.get("link")]
    # prose wraps at the terminal's width; a link stays whole on a line of its own (to copy)
    for task, attempt, link in links:
        out.print(f"job {task}#{attempt}:", markup=False)
        out.print(f"  {link}", markup=False, soft_wrap=True)
    for st in rt.store.steps.latest(plan_id).values():
        if st.status is models.StepStatus.BLOCKED:
            out.print(f"BLOCKED {st.task_id}: {st.question}  -> planfleet decide {plan_id} "
                      f"{st.task_id} retry|skip|fail|answer --note …", markup=False)
    from planfleet.workers.dispatching import waiting_reasons

    for task, why in sorted(waiting_reasons(rt.store.fleet.load(), rt.config, plan_id).items()):
        out.print(f"WAITING {task}: {why}", markup=False)
    for c in rt.store.circuits.get(p.scripts).values():
        if c.state != "closed" or c.failures:
            out.print(f"circuit {c.script}: {c.state}, {c.failures} consecutive failures"
                      + (f", last: {c.last_error[:120]}" if c.last_error else ""), markup=False)
    if wait and not settled:
        raise _waited_in_vain(f"plan {plan_id} still {p.status}", wait)


@solvers_app.callback(invoke_without_command=True)
def solvers_list(ctx: typer.Context) -> None:
    """List the solvers: capacity, busy slots, ready steps waiting, script."""
    if ctx.invoked_subcommand is not None:
        return
    rt = _runtime()
    table = Table("solver", "capacity", "busy", "waiting", "script", box=None)
    for row in rt.store.fleet.solvers():
        table.add_row(row["name"], str(row["capacity"]), str(row["busy"]), str(row["waiting"]),
                      row["script"] or "")
    out.print(table)


@solvers_app.command("set")
def solvers_set(
    name: Annotated[str, typer.Argument(help="Solver name, as task files name it.")],
    capacity: Annotated[int, typer.Option(min=0, help="Steps it may run at once, fleet-wide.")],
    script: Annotated[str | None, typer.Option(help="Its default Windmill script.")] = None,
) -> None:
    """Declare a solver or change its capacity (every plan shares it from the next round)."""
    rt = _runtime()
    row = rt.store.fleet.set_solver(name, capacity, script)
    out.print(f"solver {row['name']}: capacity {row['capacity']}"
              + (f", script {row['script']}" if row["script"] else ""), markup=False)


@solvers_app.command("remove")
def solvers_remove(name: Annotated[str, typer.Argument(help="Solver name.")]) -> None:
    """Forget a solver: its steps are bound only by their plans' own capacities."""
    rt = _runtime()
    try:
        rt.store.fleet.remove_solver(name)
    except exceptions.NotFound as exc:
        raise _fail(str(exc), RET_CONFLICT) from exc
    out.print(f"solver {name} removed", markup=False)


@app.command()
def reconcile(
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
) -> None:
    """Enqueue again what Postgres says should move but nobody moves (a loop)."""
    from planfleet.workers import reconcile as rec

    rt = _runtime(wait=not once)
    if once:
        done = rec.reconcile_once(rt)
        out.print(f"enqueued again: inputs {done['inputs']}, plans {done['plans']}")
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rec.run(rt, stop)


def _duration(text: str) -> float:
    """An age in wall-clock seconds: ``30d`` (a day is 24 h), ``12h``, ``90m``, ``45s``, or
    plain seconds."""
    try:
        value = durations.parse_wall_seconds(text)
    except ValueError:
        raise _fail(f"expected a duration like 30d (24 h each), 12h, 90m or 45s, got {text!r}",
                    RET_INVALID) from None
    if value <= 0:
        raise _fail("the duration must be positive", RET_INVALID)
    return value


@app.command()
def prune(
    older_than: Annotated[str, typer.Option(
        help="Age in wall-clock time: 30d (a day is 24 h), 12h, 90m, 45s.")] = "30d",
) -> None:
    """Delete finished inputs, plans, steps and events older than that, and their RQ jobs.
    Nothing that is still moving is touched."""
    from planfleet.workers import reconcile as rec

    seconds = _duration(older_than)
    rt = _runtime()
    done = rec.prune(rt, seconds)
    out.print(f"pruned {done['inputs']} inputs, {done['plans']} plans, {done['events']} "
              f"events and {done['rq_jobs']} RQ jobs older than {older_than}")


@app.command("plan")
def plan_cmd(
    source: Annotated[str, typer.Argument(help="Task-list file, or - for standard input.")],
    max_parallel: Annotated[
        int | None, typer.Option(min=1, envvar="PLANFLEET_MAX_PARALLEL",
                                 help="Tasks at once (default: the file's, else 15).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The plan as JSON, nothing else.")] = False,
    windmill_flow: Annotated[
        bool, typer.Option("--windmill-flow", help="The plan as a Windmill flow (OpenFlow JSON).")
    ] = False,
    budget: Annotated[
        float | None, typer.Option(min=0, help="Seconds of schedule search (default scales "
                                   "with size).")
    ] = None,
) -> None:
    """Plan a task-list file (native JSON/YAML, YouTrack export, spec-kit tasks.md); store
    nothing."""
    from planfleet import planner
    from planfleet.planner import flow, render

    machine = as_json or windmill_flow
    try:
        if source == "-":
            content, name = sys.stdin.buffer.read(), "stdin"
        else:
            path = Path(source)
            if path.stat().st_size > Config().max_file_bytes:
                raise planner.PlanningError([planner.Problem(
                    "too_large", f"{source} is over {Config().max_file_bytes} bytes")])
            content, name = path.read_bytes(), path.name
        result = planner.plan_bytes(content, name, max_parallel=max_parallel, budget=budget)
    except OSError as exc:
        if machine:
            sys.stderr.write(json.dumps({"error": f"cannot read {source}: {exc.strerror}"}) + "\n")
        else:
            err.print(f"[red]error:[/red] cannot read {source}: {exc.strerror}")
        raise typer.Exit(RET_INVALID) from exc
    except planner.PlanningError as exc:
        if machine:
            sys.stderr.write(json.dumps(exc.to_dict()) + "\n")
        else:
            n = len(exc.problems)
            lines = [f"cannot plan {source} ({n} problem{'s' if n != 1 else ''}):"]
            lines += [f"  - {problem}" for problem in exc.problems]
            if exc.warnings:
                lines.append(f"and {len(exc.warnings)} warning{'s' if len(exc.warnings) != 1 else ''}:")
                lines += [f"  - {w}" for w in exc.warnings]
            sys.stderr.write("\n".join(lines) + "\n")
        raise typer.Exit(RET_INVALID) from exc
    if result.warnings and not machine:
        n = len(result.warnings)
        lines = [f"{n} warning{'s' if n != 1 else ''} about {source}:"]
        lines += [f"  - {planner.Problem(**w)}" for w in result.warnings]
        sys.stderr.write("\n".join(lines) + "\n")
    if windmill_flow:
        sys.stdout.write(json.dumps(flow.to_windmill_flow(result, fleet=Config().step_policy()),
                                    indent=2) + "\n")
    elif as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        sys.stdout.write(render.text(result) + "\n")


@app.command()
def up(
    plan_workers: Annotated[int, typer.Option(envvar="PLANFLEET_PLAN_WORKERS", min=0)] = 1,
    build_workers: Annotated[int, typer.Option(envvar="PLANFLEET_BUILD_WORKERS", min=0)] = 1,
) -> None:
    """Bring the whole fleet up on this machine (embedded Postgres and Redis when
    DATABASE_URL / REDIS_URL are not set); Ctrl-C stops everything it started."""
    from planfleet import up as up_mod

    logs.configure(Config().log_format)
    sys.exit(up_mod.run(plan_workers=plan_workers, build_workers=build_workers))


def main() -> None:  # pragma: no cover - console entry point
    app()


def _watch_dir() -> Path:
    """The directory the watcher watches: the settings row's, else the configured one."""
    from planfleet.schema.repositories import Store

    config = Config()
    try:
        store = Store.from_url(config.database_url)
        try:
            wanted = store.settings.get().watch_dir
        finally:
            store.close()
    except exceptions.PlanfleetError:
        wanted = None  # Postgres is not up: the configured directory
    return Path(wanted or config.watch_dir).expanduser()


@pull_app.command("youtrack")
def pull_youtrack(
    url: Annotated[str, typer.Option(envvar="YOUTRACK_URL", help="YouTrack base URL.")],
    token: Annotated[str, typer.Option(envvar="YOUTRACK_TOKEN", help="Permanent token.")],
    project: Annotated[str, typer.Option(help="Project short name (e.g. SAM).")],
    query: Annotated[str | None, typer.Option(help="Extra YouTrack search terms.")] = None,
    to: Annotated[Path | None, typer.Option(help="Folder (default: the watch dir).")] = None,
    estimate_field: Annotated[str, typer.Option(
        help="The custom field holding the estimate (a period field).")] = "Estimation",
    priority: Annotated[list[str] | None, typer.Option(
        help="A custom priority value and its number, NAME=NUMBER (repeatable), e.g. "
             "'Nice to have=10'.")] = None,
    every: Annotated[str | None, typer.Option(
        help="Pull again every DURATION of wall-clock time (e.g. 15m) until stopped: each "
             "pull is a new version of the same source, which revises its plan.")] = None,
) -> None:
    """Fetch a project's open issues (priority, estimate, dependency links) into a task file
    (youtrack-PROJECT.json, replaced by each pull)."""
    from planfleet import durations, youtrack

    try:
        priorities = youtrack.parse_priorities(priority or [])
    except ValueError as exc:
        raise _fail(str(exc), RET_INVALID) from exc
    if not estimate_field.strip():
        raise _fail("--estimate-field must name a field", RET_INVALID)
    if len(youtrack.sources.normalise_query(query)) > youtrack.sources.MAX_QUERY_LENGTH:
        raise _fail(f"--query is over {youtrack.sources.MAX_QUERY_LENGTH} characters",
                    RET_INVALID)

    try:
        interval = None if every is None else durations.parse_wall_seconds(every, "--every")
    except ValueError as exc:
        raise _fail(str(exc), RET_INVALID) from exc
    if interval is not None and interval < 1:
        raise _fail("--every must be at least 1s", RET_INVALID)

    def pull() -> None:
        issues = youtrack.fetch_issues(url, token, project, query, quote_body=True)
        if not issues:
            err.print(f"no open issues in {project} match "
                      f"{youtrack.query_for(project, query)!r}; nothing written", markup=False,
                      soft_wrap=True)
            return
        doc = youtrack.document(issues, project=project, query=query,
                                estimate_field=estimate_field.strip(), priorities=priorities)
        path = youtrack.write_task_file(doc, to or _watch_dir(), project, query)
        out.print(f"{len(issues)} issues of {project} written to {path} (source "
                  f"{youtrack.sources.youtrack(project, query)})", markup=False, soft_wrap=True)

    while True:
        try:
            pull()
        except youtrack.YouTrackError as exc:
            if interval is None or not exc.unavailable:
                raise _fail(str(exc), RET_UNAVAILABLE if exc.unavailable else RET_INVALID
                            ) from exc
            err.print(f"pull failed, trying again in {durations.format_seconds(interval)}: "
                      f"{exc}", markup=False, soft_wrap=True)
        if interval is None:
            return
        time.sleep(interval)


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Address (default PLANFLEET_API_HOST, "
                                                  "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default PLANFLEET_API_PORT, 8080).")]
    = None,
) -> None:
    """The control plane: REST API, web UI, /metrics, rq-dashboard under /rq."""
    import uvicorn

    from planfleet.api import create_app

    config = Config()
    logs.configure(config.log_format)
    host = host or config.api_host
    if host not in _LOOPBACK and not config.api_token:
        raise _fail(f"refusing to listen on {host} without PLANFLEET_API_TOKEN set: anyone "
                    "who can reach it could change the fleet", RET_INVALID)
    uvicorn.run(create_app(config=config), host=host, port=port or config.api_port,
                log_config=None, access_log=False)


@windmill_app.command("validate")
def windmill_validate(
    directory: Annotated[Path | None, typer.Argument(
        help="Assets folder (default: the scripts shipped in the package).")] = None,
    tasks: Annotated[list[Path] | None, typer.Option(
        "--tasks", help="Task files whose scripts must exist there (repeatable).")] = None,
) -> None:
    """Check Windmill assets without a server: main vs .script.yaml, flows, schedules,
    wmill.yaml, and the scripts task files would run. Lists every problem; exit 2 if any."""
    from planfleet import assets

    root = directory or Config().scripts_dir
    problems = assets.validate(root, tasks or [])
    for problem in problems:
        err.print(str(problem), markup=False, soft_wrap=True)
    if problems:
        raise _fail(f"{len(problems)} problems in {root}", RET_INVALID)
    out.print(f"{root}: scripts, flows, schedules and wmill.yaml are consistent", markup=False,
              soft_wrap=True)
