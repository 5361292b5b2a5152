"""The FastAPI application (``planfleet api`` serves it with uvicorn)."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from planfleet import exceptions, metrics
from planfleet.api import routes, security, ui
from planfleet.config import Config
from planfleet.planner import PlanningError
from planfleet.runtime import Runtime, open_runtime

log = structlog.get_logger(__name__)
STATIC = Path(__file__).parent / "static"
#: Swagger UI's files, served from the installed package (no CDN: /docs works offline)
SWAGGER = Path(str(importlib.resources.files("fastapi_swagger") / "resources"))
DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>planfleet API</title>
<link rel="stylesheet" href="/static/swagger/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/static/swagger/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>
"""


def create_app(rt: Runtime | None = None, *, config: Config | None = None,
               dashboard: bool = True) -> FastAPI:
    """The app over ``rt`` (opened from ``config`` at start-up when not given)."""
    config = config or (rt.config if rt else Config())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = app.state.rt is None
        if own:
            app.state.rt = open_runtime(config, wait=True)
            app.state.registry = metrics.registry(app.state.rt)
        try:
            yield
        finally:
            if own:
                app.state.rt.close()

    app = FastAPI(title="planfleet", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Task files in, dependency-aware plans out, built by workers.")
    app.state.rt = rt
    app.state.token = config.api_token or None
    app.state.max_body = config.max_file_bytes
    app.state.planning = threading.BoundedSemaphore(config.plan_concurrency)
    app.add_middleware(security.Guard, policy=security.Policy(
        token=config.api_token or None, metrics_token=config.metrics_token or None))
    app.state.registry = metrics.registry(rt) if rt else None
    app.include_router(routes.api)
    app.include_router(routes.mutating, dependencies=[Depends(routes.require_token)])
    app.include_router(ui.pages)
    app.mount("/static/swagger", StaticFiles(directory=SWAGGER), name="swagger")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if dashboard:
        _mount_rq_dashboard(app, config)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "not ready"}})
    def readyz(request: Request) -> Response:
        """Postgres and Redis answer: ``ok`` or ``down`` each (open to anyone, so the reason
        is only logged)."""
        state: dict[str, str] = {}
        rt_: Runtime = request.app.state.rt
        try:
            rt_.store.settings.get()
            state["postgres"] = "ok"
        except exceptions.PlanfleetError as exc:
            state["postgres"] = "down"
            log.warning("not_ready", action="readyz", service="postgres", error=str(exc))
        try:
            rt_.queues.connection.ping()
            state["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            state["redis"] = "down"
            log.warning("not_ready", action="readyz", service="redis",
                        error=f"{type(exc).__name__}: {exc}")
        ok = all(v == "ok" for v in state.values())
        return JSONResponse(state, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics_endpoint(request: Request) -> Response:
        """Prometheus metrics (text format)."""
        body = metrics.exposition(request.app.state.registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    def error(status: int, detail: str, **extra: Any) -> JSONResponse:
        return JSONResponse({"detail": detail, **extra}, status_code=status)

    # what planfleet raises and the status a client gets (the most specific class wins)
    statuses: dict[type[Exception], int] = {
        exceptions.NotFound: 404, exceptions.InvalidTransition: 409,
        exceptions.DatabaseUnavailable: 503, exceptions.QueueUnavailable: 503,
    }
    for cls, status in statuses.items():
        async def handle(request: Request, exc: Exception, status: int = status) -> JSONResponse:
            return error(status, str(exc))
        app.add_exception_handler(cls, handle)

    @app.exception_handler(PlanningError)
    async def invalid(request: Request, exc: PlanningError) -> JSONResponse:
        return error(422, str(exc), problems=[p.to_dict() for p in exc.problems])

    @app.exception_handler(psycopg.DataError)
    async def bad_value(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # a value Postgres cannot take (a NUL character, a number out of range): the client's,
        # told in the shape of every other 422 (FastAPI's validation errors)
        return JSONResponse({"detail": [{
            "loc": ["body"], "msg": f"invalid value: {str(exc).splitlines()[0]}",
            "type": "value_error"}]}, status_code=422)

    return app


def _mount_rq_dashboard(app: FastAPI, config: Config) -> None:
    """rq-dashboard (Flask) under /rq, reading the fleet's Redis with the JSON serializer."""
    try:
        from a2wsgi import WSGIMiddleware
        from rq.serializers import JSONSerializer
        from rq_dashboard import web
        from rq_dashboard.cli import make_flask_app
    except ImportError as exc:
        log.info("rq_dashboard_unavailable", error=str(exc))
        return
    flask_app = make_flask_app(config=None, username=None, password=None, url_prefix="")
    # it has no authentication of its own: no deleting jobs from it
    flask_app.config.update(RQ_DASHBOARD_REDIS_URL=config.redis_url,
                            RQ_DASHBOARD_POLL_INTERVAL=2500, RQ_DASHBOARD_DISABLE_DELETE=True)
    # The Guard (planfleet.api.security) authenticates /rq like every route. Its pages render
    # job texts (exc_info, description, result) unescaped, so: only the page's own inline
    # script runs (by its hash; its templates need eval), no event handler, no other script.
    from flask import abort, request

    @flask_app.before_request
    def _no_acting_get() -> None:
        if request.method != "POST" and request.path.startswith("/requeue/"):
            abort(405)  # it requeues on GET as well: only POST (same-origin checked) may

    @flask_app.after_request
    def _csp(response: Any) -> Any:
        if response.mimetype == "application/json" and "/data/" in request.path:
            # its templates insert these texts as HTML: send them as text already escaped
            response.set_data(json.dumps(security.escape_strings(
                json.loads(response.get_data()))))
        hashes = security.script_hashes(response.get_data()) if response.mimetype == (
            "text/html") else []
        response.headers["Content-Security-Policy"] = security.CSP.replace(
            "script-src 'self'", " ".join(["script-src 'self' 'unsafe-eval'", *hashes])
        ).replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
        return response

    web.config.serializer = JSONSerializer  # the dashboard's own module-level setting
    web.setup_rq_connection(flask_app)
    app.mount("/rq", WSGIMiddleware(flask_app))  # type: ignore[arg-type]
