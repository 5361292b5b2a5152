"""The REST API under ``/api``. With an API token set every route needs it (checked for all of
them by :class:`planfleet.api.security.Guard`); mutations say so in their OpenAPI entry.

Wrong state -> 409 with the reason; unknown id -> 404; bad body or parameters -> 422;
Postgres or Redis down -> 503.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response

from planfleet import actions, confine, exceptions, models, queues
from planfleet.api import charts
from planfleet.api import schemas as s
from planfleet.planner import plan_bytes
from planfleet.runtime import Runtime
from planfleet.workers.dispatching import waiting_reasons


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


def require_token(request: Request) -> None:
    """Mutations need the API token (a bearer header or the UI's session) when one is set.

    The Guard has checked the request already; this states it where the route is declared.
    """
    if request.app.state.token is None:
        return
    if request.scope.get("state", {}).get("principal") not in ("bearer", "session"):
        raise HTTPException(401, "this action needs Authorization: Bearer <PLANFLEET_API_TOKEN>",
                            headers={"WWW-Authenticate": "Bearer"})


Rt = Annotated[Runtime, Depends(runtime)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": s.Error, "description": "no such record"},
    409: {"model": s.Error, "description": "the record is not in a state that allows it"},
}
AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": s.Error, "description": "no token"},
    403: {"model": s.Error, "description": "wrong token"},
}

api = APIRouter(prefix="/api")
#: mutations: app.include_router adds the token check (see planfleet.api.app)
mutating = APIRouter(prefix="/api", responses=AUTH)


def _id(value: int) -> int:
    if not 1 <= value <= 2**63 - 1:
        raise HTTPException(404, f"no record has id {value}")
    return value


# -- inputs ----------------------------------------------------------------------------------

@api.get("/pending-inputs", response_model=s.Page[s.InputOut])
def list_inputs(rt: Rt, status: models.InputStatus | None = None, limit: Limit = 50,
                offset: Offset = 0) -> Any:
    """Recorded inputs, newest first."""
    counts = rt.store.inputs.counts()
    total = counts.get(status.value, 0) if status else sum(counts.values())
    items = rt.store.inputs.list(status=status, limit=limit, offset=offset)
    return {"items": items, "limit": limit, "offset": offset, "total": total}


@api.get("/pending-inputs/{input_id}", response_model=s.InputDetail, responses=ERRORS)
def get_input(rt: Rt, input_id: int) -> Any:
    """One input: its error and the planner's problems, its plans, its events."""
    got, problems, plans, events = input_detail(rt, _id(input_id), events=200)
    return {**s.InputOut.model_validate(got).model_dump(), "problems": problems,
            "plans": plans, "events": events}


def input_detail(rt: Runtime, input_id: int, *, events: int) -> tuple[
        models.PendingInput, list[dict[str, Any]], list[models.PlanRecord], list[models.Event]]:
    """An input, the planner's problems with it, its plans and its latest events."""
    got = rt.store.inputs.get(input_id)
    trail = rt.store.events.list(input_id=input_id, limit=events)
    problems: list[dict[str, Any]] = next(
        (e.data.get("problems", []) for e in trail if e.kind == "plan_failed"), [])
    return got, problems, rt.store.plans.of_input(input_id), trail


@api.get("/pending-inputs/{input_id}/content", responses={
    **ERRORS, 200: {"content": {"application/octet-stream": {}},
                    "description": "the stored bytes"}})
def input_content(rt: Rt, input_id: int) -> Response:
    """The input's stored bytes, as a download."""
    got = rt.store.inputs.get(_id(input_id), content=True)
    if got.content is None:
        raise HTTPException(404, f"input {input_id} has no stored content ({got.error})")
    return Response(got.content, media_type="application/octet-stream",
                    headers={"Content-Disposition": content_disposition(got.filename)})


def content_disposition(filename: str) -> str:
    """An attachment header for any file name (RFC 6266): an ASCII ``filename`` for old
    clients and the exact name, UTF-8 and percent-encoded, as ``filename*``."""
    plain = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in filename)
    exact = quote(filename.encode("utf-8", "surrogateescape"), safe="")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{exact}"


@mutating.post("/pending-inputs/{input_id}/enqueue-plan", response_model=s.Done,
               responses=ERRORS)
def enqueue_plan(rt: Rt, input_id: int) -> Any:
    """pending -> queued for planning (the "Generate plan" button)."""
    actions.enqueue_plan(rt, _id(input_id))
    return s.Done(id=input_id, status="queued", message=f"input {input_id} queued for planning")


@mutating.post("/inputs/{input_id}/replan", response_model=s.Done, responses=ERRORS)
def replan(rt: Rt, input_id: int) -> Any:
    """planned | failed -> queued: plan the stored bytes again."""
    actions.replan(rt, _id(input_id))
    return s.Done(id=input_id, status="queued",
                  message=f"input {input_id} queued for planning again")


_TASK_FILE = {
    "requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "text/plain": {"schema": {"type": "string"}},
        "application/json": {"schema": {}},
        "application/yaml": {"schema": {"type": "string"}},
    }}}


async def read_capped(request: Request, limit: int) -> bytes:
    """The request's body, read as it arrives and refused (413) as soon as it passes ``limit``
    bytes: a huge body is never held in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the task file is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the task file is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _body(request: Request) -> bytes:
    limit: int = request.app.state.max_body
    return await read_capped(request, limit)


@mutating.post("/inputs", response_model=s.Uploaded, status_code=201,
               openapi_extra=_TASK_FILE, responses={413: {"model": s.Error}})
def upload(rt: Rt, filename: Annotated[str, Query(min_length=1, max_length=255,
                                                 pattern=r"^[^/\x00]+$")],
           content: Annotated[bytes, Depends(_body)]) -> Any:
    """Record a task file as if dropped into the watch dir (planned when auto_plan is on): a
    version of the source ``upload:<filename>``, or of the ``source:`` the file declares."""
    out = actions.upload(rt, filename, content)
    return s.Uploaded(input_id=out.input_id, filename=out.filename, outcome=out.outcome,
                      source=out.source)


@api.post("/plan", openapi_extra=_TASK_FILE, responses={
    422: {"model": s.Invalid, "description": "the task list cannot be planned"},
    413: {"model": s.Error}, 429: {"model": s.Error, "description": "planning at capacity"}})
async def plan(request: Request,
               filename: Annotated[str, Query(max_length=255)] = "tasks.yaml",
               max_parallel: Annotated[int | None, Query(ge=1, le=10_000)] = None) -> Any:
    """Plan a posted task list and return the plan; nothing is stored. At most
    ``PLANFLEET_PLAN_CONCURRENCY`` requests plan at once; one more answers 429."""
    gate = request.app.state.planning
    if not gate.acquire(blocking=False):
        raise HTTPException(429, "the API is planning as many task lists as it may at once; "
                                 "try again shortly", headers={"Retry-After": "1"})
    try:
        content = await _body(request)
        doc = await run_in_threadpool(plan_bytes, content, filename, max_parallel=max_parallel)
        del content
        # serialized once, by pydantic (a 100,000-task plan is ~60 MB of JSON: no dict copy)
        body = await run_in_threadpool(doc.model_dump_json)
        return Response(body, media_type="application/json")
    finally:
        gate.release()


# -- plans -----------------------------------------------------------------------------------

@api.get("/plans", response_model=s.Page[s.PlanOut])
def list_plans(rt: Rt, status: models.PlanStatus | None = None, limit: Limit = 50,
               offset: Offset = 0) -> Any:
    """Plans, newest first."""
    counts = rt.store.plans.counts()
    total = counts.get(status.value, 0) if status else sum(counts.values())
    items = rt.store.plans.list(status=status, limit=limit, offset=offset)
    return {"items": items, "limit": limit, "offset": offset, "total": total}


@api.get("/plans/{plan_id}", response_model=s.PlanDetail, responses=ERRORS)
def get_plan(rt: Rt, plan_id: int) -> Any:
    """A plan with its document, its steps (latest attempts and all attempts) and circuits."""
    p = rt.store.plans.get(_id(plan_id))
    every = rt.store.steps.all(p.id)
    latest = rt.store.steps.latest(p.id)
    return {**s.PlanOut.model_validate(p).model_dump(), "plan": p.plan,
            "steps": [s.StepOut.of(x) for x in latest.values()],
            "history": [s.StepOut.of(x) for x in every],
            "circuits": list(rt.store.circuits.get(p.scripts).values()),
            "waiting_for_a_person": charts.waiting_on_people(p.plan or {}, latest),
            "waiting_for_a_slot": waiting_reasons(rt.store.fleet.load(), rt.config, p.id),
            "revisions": revisions_of(rt, p.id)}


def revisions_of(rt: Runtime, plan_id: int) -> list[dict[str, Any]]:
    """The plan's revisions, a waiting one with the diff it would apply now."""
    out = []
    for r in rt.store.revisions.of_plan(plan_id):
        diff = r.diff
        if r.status == "waiting":
            diff = actions.waiting_revision(rt, plan_id)[1].summary()
        out.append({"id": r.id, "input_id": r.input_id, "status": r.status,
                    "created_at": r.created_at, "applied_at": r.applied_at, "diff": diff})
    return out


@api.get("/plans/{plan_id}/steps/{step_id}/log", responses={
    **ERRORS, 200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                    "description": "the log"}})
def step_log(rt: Rt, plan_id: int, step_id: int) -> PlainTextResponse:
    """The output of a step's job run by the local runner (its last 64 KiB)."""
    step = next((x for x in rt.store.steps.all(_id(plan_id)) if x.id == step_id), None)
    if step is None:
        raise HTTPException(404, f"plan {plan_id} has no step {step_id}")
    if step.windmill_job_id is None:
        raise HTTPException(404, f"step {step_id} has not been dispatched")
    if rt.config.dispatch != "local":
        link = step.result.get("link") if isinstance(step.result, dict) else None
        raise HTTPException(404, f"the job's log is in Windmill: {link or step.windmill_job_id}")
    path = rt.config.state_dir.resolve() / "runner" / "jobs" / str(step.windmill_job_id) / (
        "log.txt")
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 65536))
            return PlainTextResponse(fh.read().decode("utf-8", "replace"))
    except FileNotFoundError:
        raise HTTPException(404, f"no log for step {step_id} (yet)") from None


@mutating.post("/plans/{plan_id}/enqueue-build", response_model=s.Done, responses=ERRORS)
def enqueue_build(rt: Rt, plan_id: int) -> Any:
    """ready_for_build -> queued for building (the "Enqueue build" button)."""
    actions.enqueue_build(rt, _id(plan_id))
    return s.Done(id=plan_id, status="queued", message=f"plan {plan_id} queued for building")


@mutating.post("/plans/{plan_id}/cancel", response_model=s.Done, responses=ERRORS)
def cancel(rt: Rt, plan_id: int,
           body: Annotated[s.CancelIn | None, Body()] = None) -> Any:
    """Stop a plan: nothing new starts, queued and running step jobs are cancelled."""
    reason = (body or s.CancelIn()).reason
    actions.cancel(rt, _id(plan_id), reason)
    return s.Done(id=plan_id, status="cancelled", message=f"plan {plan_id} cancelled: {reason}")


@mutating.post("/plans/{plan_id}/pause", response_model=s.Done, responses=ERRORS)
def pause(rt: Rt, plan_id: int) -> Any:
    """Start no new steps; running ones finish."""
    actions.pause(rt, _id(plan_id))
    return s.Done(id=plan_id, status="paused", message=f"plan {plan_id} paused")


@mutating.post("/plans/{plan_id}/resume", response_model=s.Done, responses=ERRORS)
def resume(rt: Rt, plan_id: int) -> Any:
    """A paused (or blocked) plan goes on building."""
    actions.resume(rt, _id(plan_id))
    return s.Done(id=plan_id, status="queued", message=f"plan {plan_id} resumed")


@mutating.post("/plans/{plan_id}/steps/{task_id}/decide", response_model=s.Done,
               responses=ERRORS)
def decide(rt: Rt, plan_id: int, task_id: Annotated[str, Path(max_length=200)],
           body: s.DecisionIn) -> Any:
    """Decide on a step waiting for a person: retry (note: feedback), answer (note: the
    answer to its question), skip (dependents go on) or fail."""
    message = actions.decide(rt, _id(plan_id), task_id, body.decision, body.note)
    return s.Done(id=plan_id, status=body.decision, message=message)


@mutating.post("/plans/{plan_id}/revisions/{revision_id}/apply", response_model=s.Done,
               responses=ERRORS)
def apply_revision(rt: Rt, plan_id: int, revision_id: int) -> Any:
    """Apply a revision that waits for a person (a newer version of the plan's source while
    the fleet does not build on its own): the plan's next turn applies it."""
    actions.apply_revision(rt, _id(plan_id), _id(revision_id))
    return s.Done(id=plan_id, status="pending",
                  message=f"plan {plan_id}: revision {revision_id} will be applied")


@mutating.post("/plans/{plan_id}/retry", response_model=s.Done, responses=ERRORS)
def retry(rt: Rt, plan_id: int) -> Any:
    """Build a failed plan again: only its failed, skipped and cancelled steps run."""
    n = actions.retry(rt, _id(plan_id))
    return s.Done(id=plan_id, status="queued", message=f"plan {plan_id}: {n} steps run again")


# -- settings, queues, events ----------------------------------------------------------------

@api.get("/settings", response_model=s.SettingsOut)
def get_settings(rt: Rt) -> Any:
    """The operator settings."""
    return rt.store.settings.get()


@mutating.put("/settings", response_model=s.SettingsOut)
def put_settings(rt: Rt, body: s.SettingsIn) -> Any:
    """Change operator settings; every process sees the change within a second.
    ``watch_dir`` must be an existing folder inside the watch root (PLANFLEET_WATCH_ROOT)."""
    watch_dir = None
    if body.watch_dir:
        try:
            watch_dir = str(confine.watch_dir(body.watch_dir, confine.watch_root(rt.config)))
        except exceptions.InvalidSetting as exc:
            raise RequestValidationError([{
                "loc": ("body", "watch_dir"), "msg": str(exc), "type": "value_error",
                "input": body.watch_dir}]) from None
    rt.store.settings.update(
        auto_plan=body.auto_plan, auto_build=body.auto_build, max_parallel=body.max_parallel,
        max_running=body.max_running,
        watch_dir=watch_dir, set_watch_dir=body.watch_dir is not None)
    return rt.store.settings.get()


@api.get("/solvers", response_model=list[s.SolverOut])
def list_solvers(rt: Rt) -> Any:
    """The fleet's solvers: capacity shared by every plan, busy slots, ready steps waiting."""
    return rt.store.fleet.solvers()


SolverName = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^/\x00]+$")]


@mutating.put("/solvers/{name}", response_model=s.SolverOut)
def put_solver(rt: Rt, name: SolverName, body: s.SolverIn) -> Any:
    """Declare a solver or change its capacity (and script)."""
    rt.store.fleet.set_solver(name, body.capacity, body.script)
    return next(r for r in rt.store.fleet.solvers() if r["name"] == name)


@mutating.delete("/solvers/{name}", response_model=s.SolverRemoved,
                  responses={404: {"model": s.Error}})
def delete_solver(rt: Rt, name: SolverName) -> Any:
    """Forget a solver (its steps are bound only by their plans' own capacities)."""
    rt.store.fleet.remove_solver(name)
    return s.SolverRemoved(name=name, message=f"solver {name} removed")


@api.get("/queues", response_model=s.QueuesOut, responses={503: {"model": s.Error}})
def get_queues(rt: Rt) -> Any:
    """Per queue: waiting, started, failed and scheduled jobs; workers and how many are busy."""
    st = rt.store.settings.get()
    out = []
    for q, auto in ((rt.queues.plan, st.auto_plan), (rt.queues.build, st.auto_build)):
        stats = queues.stats(q)
        out.append(s.QueueOut(mode="auto" if auto else "manual", **vars(stats)))
    return {"queues": out}


@api.get("/events", response_model=s.EventPage)
def list_events(rt: Rt, input_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
                plan_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
                kind: Annotated[str | None, Query(max_length=100)] = None,
                before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
                limit: Limit = 100) -> Any:
    """The audit trail, newest first; ``next_before`` asks for the page after this one."""
    items = rt.store.events.list(input_id=input_id, plan_id=plan_id, kind=kind, before=before,
                                 limit=limit)
    return {"items": items, "limit": limit,
            "next_before": items[-1].id if len(items) == limit else None}
