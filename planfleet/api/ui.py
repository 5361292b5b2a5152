"""The web UI: server-rendered pages (Jinja2) kept live by a small script that fetches the
page's main part again every two seconds and sends the buttons' actions to the REST API."""

from __future__ import annotations

import collections
import datetime as dt
import secrets
import threading
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from planfleet import durations, models, queues
from planfleet.api import charts, listing, redact, routes, security
from planfleet.runtime import Runtime
from planfleet.workers.dispatching import running_plans, waiting_reasons

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["paths"] = redact.paths
# every duration a page shows is in the one format (planfleet.durations)
templates.env.filters["minutes"] = durations.format_minutes
templates.env.filters["seconds"] = durations.format_seconds
templates.env.globals["title_of"] = charts.title_of
pages = APIRouter(include_in_schema=False)

#: what a person is asked before an input is planned again (it makes a new plan)
REPLAN_QUESTION = ("Plan {name} again? A new plan is made from its stored file; with "
                   "auto_build on, that plan's tasks run again.")
#: an input's button in each status: label, method, URL, the question asked first (or None)
INPUT_ACTIONS = {
    models.InputStatus.PENDING: ("Generate plan", "POST", "/api/pending-inputs/{id}/enqueue-plan",
                                 None),
    models.InputStatus.PLANNED: ("Plan again", "POST", "/api/inputs/{id}/replan", REPLAN_QUESTION),
    models.InputStatus.FAILED: ("Plan again", "POST", "/api/inputs/{id}/replan", REPLAN_QUESTION),
}
templates.env.globals["input_actions"] = INPUT_ACTIONS
#: dependency graph layouts by (plan id, digest): a plan's graph never changes, and its page
#: is drawn again every two seconds
_LAYOUTS: collections.OrderedDict[tuple[int, str], charts.DagLayout] = collections.OrderedDict()
_LAYOUTS_LOCK = threading.Lock()


def _render(request: Request, name: str, **ctx: Any) -> HTMLResponse:
    """The whole page, or only its ``main`` block when the page's script asks for it."""
    ctx.update(request=request, colours=charts.COLOURS, auth=request.app.state.token is not None)
    if request.headers.get("x-partial"):
        template = templates.get_template(name)
        context = template.new_context(ctx)
        return HTMLResponse("".join(template.blocks["main"](context)))
    return templates.TemplateResponse(request, name, ctx)


def _queues(rt: Runtime, settings: models.Settings) -> list[dict[str, Any]]:
    out = []
    for q, auto, hop in ((rt.queues.plan, settings.auto_plan, "auto_plan"),
                         (rt.queues.build, settings.auto_build, "auto_build")):
        try:
            stats: dict[str, Any] = vars(queues.stats(q))
        except Exception as exc:  # noqa: BLE001 - the page still shows, with the reason
            stats = {"name": q.name, "error": str(exc)}
        out.append({**stats, "auto": auto, "setting": hop})
    return out


@pages.get("/", response_class=HTMLResponse)
def dashboard(request: Request, status: models.InputStatus | None = None) -> HTMLResponse:
    """Queues and settings, the inputs (all, or those of one ``status``), plans, events."""
    rt = routes.runtime(request)
    settings = rt.store.settings.get()
    plans = rt.store.plans.list(limit=25)
    return _render(
        request, "dashboard.html", settings=settings, queues=_queues(rt, settings),
        inputs=rt.store.inputs.list(status=status, limit=25), status=status,
        input_statuses=[s.value for s in models.InputStatus],
        input_counts=rt.store.inputs.counts(), plans=plans,
        labels=rt.store.plans.labels(p.id for p in plans), plan_counts=rt.store.plans.counts(),
        events=rt.store.events.list(limit=15))


def _dag_layout(p: models.PlanRecord) -> charts.DagLayout:
    key = (p.id, p.digest)
    with _LAYOUTS_LOCK:
        if key in _LAYOUTS:
            _LAYOUTS.move_to_end(key)
            return _LAYOUTS[key]
    layout = charts.dag_layout(p.plan or {})
    with _LAYOUTS_LOCK:
        _LAYOUTS[key] = layout
        while len(_LAYOUTS) > 32:
            _LAYOUTS.popitem(last=False)
    return layout


@pages.get("/plans/{plan_id}", response_class=HTMLResponse)
def plan_page(request: Request, plan_id: int) -> HTMLResponse:
    rt = routes.runtime(request)
    p = rt.store.plans.get(routes._id(plan_id))
    latest = rt.store.steps.latest(plan_id)
    doc = p.plan or {}
    live = p.status.value in charts.LIVE
    attempts = rt.store.steps.all(plan_id)
    # tasks a revision added or removed are named too: by what their steps ran with, by the
    # revisions' documents, by the plan's own
    titles = {s.task_id: s.args.get("title") for s in attempts if isinstance(s.args, dict)}
    titles.update(rt.store.revisions.titles(p.id))
    return _render(
        request, "plan.html", p=p, doc=doc, steps=latest, attempts=attempts,
        label=rt.store.plans.labels([p.id]).get(p.id), live=live,
        gantt=charts.gantt(doc, latest, now=dt.datetime.now(dt.UTC), live=live),
        dag=charts.dag(doc, latest, _dag_layout(p)),
        waiting=charts.waiting_on_people(doc, latest),
        slots=waiting_reasons(rt.store.fleet.load(), rt.config, p.id),
        circuits=[c for c in rt.store.circuits.get(p.scripts).values() if c.state != "closed"],
        revisions=routes.revisions_of(rt, p.id),
        revised_doc={"tasks": {**{t: {"title": title} for t, title in titles.items() if title},
                               **doc.get("tasks", {})}},
        events=rt.store.events.list(plan_id=plan_id, limit=30))


@pages.get("/inputs/{input_id}", response_class=HTMLResponse)
def input_page(request: Request, input_id: int) -> HTMLResponse:
    rt = routes.runtime(request)
    got, problems, plans, events = routes.input_detail(rt, routes._id(input_id), events=50)
    problems = problems if got.status is models.InputStatus.FAILED else []
    return _render(request, "input.html", i=got, problems=problems, plans=plans,
                   events=events, listing=_listing(rt, got, problems))


def _listing(rt: Runtime, got: models.PendingInput,
             problems: list[dict[str, Any]]) -> listing.Listing | None:
    """The input's lines with its problems and warnings beside them (None when none of them
    points to a line or a task, or its bytes were never stored)."""
    notes = [*problems, *got.warnings]
    if not got.digest or not any(x.get("line") or x.get("task") for x in notes):
        return None
    content = rt.store.inputs.get(got.id, content=True).content
    return None if content is None else listing.annotate(content, problems, got.warnings)


@pages.get("/favicon.ico")
def favicon() -> Response:
    """Browsers ask for it whatever the page says: the icon is an SVG among the assets."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


@pages.get("/events", response_class=HTMLResponse)
def events_page(request: Request, kind: str | None = None) -> HTMLResponse:
    rt = routes.runtime(request)
    return _render(request, "events.html", events=rt.store.events.list(kind=kind or None,
                                                                        limit=200), kind=kind)


@pages.get("/fleet", response_class=HTMLResponse)
def fleet_page(request: Request) -> HTMLResponse:
    """Per solver: capacity, busy slots, waiting steps and their plans; per plan: running and
    waiting steps."""
    rt = routes.runtime(request)
    load = rt.store.fleet.load()
    running: dict[int, int] = {}
    for (plan_id, _, _), n in load.active.items():
        running[plan_id] = running.get(plan_id, 0) + n
    holders = running_plans(load)
    waiting: dict[int, int] = {}
    waiters: dict[str, set[int]] = {}
    for r in load.ready:
        waiting[r["plan_id"]] = waiting.get(r["plan_id"], 0) + 1
        if r["solver"] is not None:
            waiters.setdefault(r["solver"], set()).add(r["plan_id"])
    solvers = [{**row, "running_plans": holders.get(row["name"], []),
                "waiting_plans": sorted(waiters.get(row["name"], ()))}
               for row in rt.store.fleet.solvers()]
    plans = [{"id": p, "running": running.get(p, 0), "waiting": waiting.get(p, 0)}
             for p in sorted(set(running) | set(waiting))]
    named = {p for row in solvers for p in (*row["running_plans"], *row["waiting_plans"])}
    return _render(request, "fleet.html", solvers=solvers, plans=plans,
                   labels=rt.store.plans.labels(named | {p["id"] for p in plans}),
                   max_running=load.max_running, active=sum(running.values()))


# -- signing in ------------------------------------------------------------------------------

@pages.get("/login", response_class=HTMLResponse)
def login_page(request: Request,
               next_: Annotated[str, Query(alias="next", max_length=2048)] = "/") -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {
        "next": security.safe_next(next_), "error": None,
        "auth": request.app.state.token is not None})


@pages.post("/login")
async def login(request: Request) -> Response:
    """Trade the API token (a form field, or the UI's ``#token=`` link) for the session cookie:
    HttpOnly (no page script reads it) and SameSite=Strict (no other site sends it)."""
    raw = await routes.read_capped(request, 8192)
    form = parse_qs(raw.decode("utf-8", "replace"))
    given = (form.get("token") or [""])[0].strip()
    target = security.safe_next((form.get("next") or ["/"])[0])
    token: str | None = request.app.state.token
    if token is not None and not secrets.compare_digest(given.encode(), token.encode()):
        return templates.TemplateResponse(request, "login.html", {
            "next": target, "error": "That is not this fleet's API token.", "auth": True},
            status_code=403)
    out: Response = RedirectResponse(target, status_code=303)
    if token is not None:
        out.set_cookie(security.SESSION_COOKIE, security.session_value(token), httponly=True,
                       samesite="strict", secure=request.url.scheme == "https", path="/")
    return out


@pages.post("/logout")
def logout(request: Request) -> Response:
    out = RedirectResponse("/login", status_code=303)
    out.delete_cookie(security.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return out
