"""A loopback Windmill for tests and benchmarks: the job and flow endpoints planfleet uses,
answering as Windmill's OpenAPI spec and documentation say.

- ``POST /api/w/{ws}/jobs/run/p/{path}?job_id=`` -> 201 + the id as text; 400 "... already
  exists" for an id used before (queued or completed); 404 for an unknown script.
- ``GET /api/w/{ws}/jobs_u/get/{id}`` -> the job (``type`` QueuedJob | CompletedJob); 404 for an
  unknown id. ``GET .../jobs_u/completed/get_result_maybe/{id}`` -> ``{completed: false}`` for
  unknown ids (never 404).
- ``POST .../jobs_u/queue/cancel/{id}`` with ``{"reason"}``.
- ``GET .../jobs/list_filtered_uuids`` with ``completed_after``, ``started_after``, ``running``,
  ``per_page``, ``page``.
- ``GET /api/jobs/db_clock``; flows: ``exists``, ``create``, ``update``, ``run/f``; a flow's
  ``branchall`` branches run as sub-jobs whose ids and outcomes show in ``flow_status``.
- 401 without the right bearer token, 404 for another workspace.

Scripts are registered by path; every script behaves by its args: ``sleep`` (seconds),
``fail`` (always raise), ``fail_times`` (raise on the first n runs of that ``task_id``; the
error is named by ``raise``, else ``Exception``), ``down`` (a solver name: raise
``AgentUnavailable`` when the job's ``solver`` is that one),
``zombie`` (the first run is lost mid-way and Windmill runs the job again). Each execution is
recorded in :attr:`FakeWindmill.executions`. Faults: :meth:`fail_next` (answer with an error
status), :meth:`drop_next` (do the work, close the connection without answering),
:meth:`stop`/:meth:`start` (the server is down).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ts(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclasses.dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int = 0
    content_type: str = ""


@dataclasses.dataclass
class Job:
    id: str
    kind: str  # script | flow
    path: str
    args: dict[str, Any]
    created_at: dt.datetime
    parent: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    running: bool = False
    success: bool | None = None
    result: Any = None
    canceled: bool = False
    canceled_reason: str | None = None
    flow_status: dict[str, Any] | None = None
    raw_flow: dict[str, Any] | None = None

    @property
    def completed(self) -> bool:
        return self.completed_at is not None

    def view(self) -> dict[str, Any]:
        common = {
            "workspace_id": "ws", "id": self.id, "created_by": "planfleet",
            "created_at": _ts(self.created_at), "started_at": _ts(self.started_at),
            "script_path": self.path, "args": self.args, "canceled": self.canceled,
            "job_kind": "flow" if self.kind == "flow" else "script",
            "permissioned_as": "u/planfleet", "is_flow_step": self.parent is not None,
            "email": "planfleet@example.com", "visible_to_owner": True, "tag": "default",
        }
        if self.parent:
            common["parent_job"] = self.parent
        if self.flow_status is not None:
            common["flow_status"] = json.loads(json.dumps(self.flow_status))
        if self.canceled:
            common.update(canceled_by="planfleet", canceled_reason=self.canceled_reason)
        if self.completed:
            assert self.started_at and self.completed_at
            return {**common, "type": "CompletedJob", "success": bool(self.success),
                    "result": self.result, "is_skipped": False,
                    "duration_ms": int((self.completed_at - self.started_at).total_seconds()
                                       * 1000)}
        return {**common, "type": "QueuedJob", "running": self.running}


class ScriptFailed(Exception):
    pass


class FakeWindmill:
    def __init__(self, *, token: str = "secret", workspace: str = "planfleet",
                 scripts: set[str] | None = None, workers: int = 4,
                 listing: int | None = None) -> None:
        self.token, self.workspace = token, workspace
        #: an older server: the listing endpoints and the db clock answer this status
        self.listing = listing
        self.scripts: set[str] = set(scripts or {"f/planner/solver_dispatch"})
        self.flows: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, Job] = {}
        self.executions: list[tuple[str, str, dict[str, Any]]] = []
        self.requests: list[Request] = []
        self.lock = threading.RLock()
        self._runs: dict[str, int] = {}
        self._faults: list[tuple[Callable[[Request], bool], int]] = []
        self._drops = 0
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for w in self._workers:
            w.start()
        self._server: ThreadingHTTPServer | None = None
        #: called with each request after it was carried out, before it is answered
        self.on_request: Callable[[Request], None] | None = None
        self.port = 0
        self.start()

    # -- life --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """The server goes down (jobs already queued keep running)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.stop()
        for _ in self._workers:
            self._queue.put(None)

    # -- faults ------------------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 503,
                  when: Callable[[Request], bool] = lambda r: True) -> None:
        """The next ``count`` requests matching ``when`` get ``status`` (nothing done)."""
        with self.lock:
            for _ in range(count):
                self._faults.append((when, status))

    def drop_next(self, count: int = 1) -> None:
        """The next ``count`` job submissions are carried out, but the connection is closed
        before the answer is written."""
        with self.lock:
            self._drops += count

    # -- queries for tests -------------------------------------------------------------------

    def count(self, method: str, fragment: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.method == method and fragment in r.path)

    def runs_of(self, task_id: str) -> int:
        with self.lock:
            return sum(1 for _, _, a in self.executions if a.get("task_id") == task_id)

    # -- the API -----------------------------------------------------------------------------

    def handle(self, req: Request) -> tuple[int, str, bytes]:
        with self.lock:
            for i, (when, status) in enumerate(self._faults):
                if when(req):
                    del self._faults[i]
                    return status, "text/plain", b"Internal Server Error: injected fault"
        auth = req.headers.get("authorization", "")
        if auth != f"Bearer {self.token}":
            return 401, "text/plain", b"Unauthorized: Could not authenticate with the token"
        path = req.path
        if self.listing is not None and (path == "/api/jobs/db_clock"
                                         or path.endswith("/jobs/list_filtered_uuids")):
            return self.listing, "text/plain", b"Not Found"
        if path == "/api/jobs/db_clock":
            return _json(200, int(time.time() * 1000))
        m = re.fullmatch(r"/api/w/([^/]+)(/.*)", path)
        if not m:
            return 404, "text/plain", b"Not Found"
        if unquote(m.group(1)) != self.workspace:
            return 404, "text/plain", f"workspace {m.group(1)} not found".encode()
        rest = m.group(2)
        q = {k: v[-1] for k, v in req.query.items()}
        for pattern, method, fn in _ROUTES:
            mm = re.fullmatch(pattern, rest)
            if mm and req.method == method:
                result: tuple[int, str, bytes] = fn(self, req, q, *map(unquote, mm.groups()))
                return result
        return 404, "text/plain", b"Not Found"

    def _new_job(self, kind: str, path: str, q: dict[str, str], req: Request,
                 known: Callable[[str], bool]) -> tuple[int, str, bytes]:
        try:
            args = json.loads(req.body or b"null")
        except ValueError:
            return 400, "text/plain", b"Bad request: body is not JSON"
        if not isinstance(args, dict):
            return 400, "text/plain", b"Bad request: script args must be an object"
        if not known(path):
            what = "script" if kind == "script" else "flow"
            return 404, "text/plain", f"{what} not found at name {path}".encode()
        job_id = q.get("job_id") or str(uuid.uuid4())
        with self.lock:
            if job_id in self.jobs:
                return 400, "text/plain", f"Bad request: uuid {job_id} already exists".encode()
            job = Job(job_id, kind, path, args, _now())
            if kind == "flow":
                job.raw_flow = self.flows[path]["value"]
                job.flow_status = {
                    "step": 0,
                    "modules": [{"type": "WaitingForPriorSteps", "id": mod["id"]}
                                for mod in job.raw_flow["modules"]],
                    "failure_module": {"type": "WaitingForPriorSteps", "id": "failure"},
                }
            self.jobs[job_id] = job
        self._queue.put(job_id)
        return 201, "text/plain", job_id.encode()

    def run_script(self, req: Request, q: dict[str, str], path: str) -> tuple[int, str, bytes]:
        return self._new_job("script", path, q, req, lambda p: p in self.scripts)

    def run_flow(self, req: Request, q: dict[str, str], path: str) -> tuple[int, str, bytes]:
        return self._new_job("flow", path, q, req, lambda p: p in self.flows)

    def get_job(self, req: Request, q: dict[str, str], job_id: str) -> tuple[int, str, bytes]:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, "text/plain", f"Job {job_id} not found".encode()
            return _json(200, job.view())

    def result_maybe(self, req: Request, q: dict[str, str],
                     job_id: str) -> tuple[int, str, bytes]:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or not job.completed:
                out: dict[str, Any] = {"completed": False, "result": None}
                if q.get("get_started") == "true":
                    out["started"] = bool(job and job.running)
                return _json(200, out)
            return _json(200, {"completed": True, "result": job.result,
                               "success": bool(job.success), "started": True})

    def cancel(self, req: Request, q: dict[str, str], job_id: str) -> tuple[int, str, bytes]:
        try:
            reason = json.loads(req.body or b"{}").get("reason")
        except (ValueError, AttributeError):
            return 400, "text/plain", b"Bad request: body must be an object"
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.completed:
                return 404, "text/plain", f"queued job id {job_id} does not exist".encode()
            self._complete(job, False, {"error": {"name": "Canceled",
                                                  "message": f"Job canceled: {reason}"}},
                           canceled=reason or "")
        return 200, "text/plain", f"job canceled {job_id}".encode()

    def list_uuids(self, req: Request, q: dict[str, str]) -> tuple[int, str, bytes]:
        supported = {"completed_after", "started_after", "running", "per_page", "page"}
        unsupported = set(q) - supported
        assert not unsupported, f"the fake does not implement the filters {unsupported}"
        per_page = int(q.get("per_page", 30))
        page = int(q.get("page", 1))
        after = (dt.datetime.fromisoformat(q["completed_after"].replace("Z", "+00:00"))
                 if "completed_after" in q else None)
        started = (dt.datetime.fromisoformat(q["started_after"].replace("Z", "+00:00"))
                   if "started_after" in q else None)
        running = q.get("running")
        with self.lock:
            found = list(self.jobs.values())
            if after is not None:
                found = [j for j in found if j.completed_at and j.completed_at > after]
            if started is not None:
                found = [j for j in found if j.started_at and j.started_at > started]
            if running is not None:
                found = [j for j in found
                         if not j.completed and j.running == (running == "true")]
            found.sort(key=lambda j: j.created_at, reverse=True)
            ids = [j.id for j in found[(page - 1) * per_page: page * per_page]]
        return _json(200, ids)

    def flow_exists(self, req: Request, q: dict[str, str], path: str) -> tuple[int, str, bytes]:
        return _json(200, path in self.flows)

    def create_flow(self, req: Request, q: dict[str, str]) -> tuple[int, str, bytes]:
        flow = json.loads(req.body)
        path = flow.get("path")
        if not path or "value" not in flow or "summary" not in flow:
            return 400, "text/plain", b"Bad request: path, summary and value are required"
        with self.lock:
            if path in self.flows:
                return 400, "text/plain", f"Bad request: Flow {path} already exists".encode()
            self.flows[path] = flow
        return 201, "text/plain", path.encode()

    def update_flow(self, req: Request, q: dict[str, str], path: str) -> tuple[int, str, bytes]:
        flow = json.loads(req.body)
        with self.lock:
            if path not in self.flows:
                return 404, "text/plain", f"flow not found at path {path}".encode()
            self.flows[flow.get("path") or path] = flow
        return 200, "text/plain", path.encode()

    # -- execution ---------------------------------------------------------------------------

    def _complete(self, job: Job, success: bool, result: Any, canceled: str | None = None) -> None:
        if job.completed:
            return
        job.running = False
        job.started_at = job.started_at or _now()
        job.completed_at = _now()
        job.success, job.result = success, result
        if canceled is not None:
            job.canceled, job.canceled_reason = True, canceled

    def _execute(self, path: str, args: dict[str, Any], job_id: str) -> tuple[bool, Any]:
        """One run of a script: (success, result)."""
        with self.lock:
            self.executions.append((job_id, path, dict(args)))
            key = str(args.get("task_id", job_id))
            self._runs[key] = self._runs.get(key, 0) + 1
            run = self._runs[key]
        if args.get("sleep"):
            time.sleep(float(args["sleep"]))
        if args.get("down") and args.get("down") == args.get("solver"):
            return False, {"error": {"name": "AgentUnavailable",
                                     "message": f"agent {args['solver']} is not available"}}
        if args.get("fail") or run <= int(args.get("fail_times") or 0):
            return False, {"error": {"name": str(args.get("raise") or "Exception"),
                                     "message": f"{args.get('task_id')} failed (run {run})"}}
        return True, {"status": "ok", "task_id": args.get("task_id"), "run": run,
                      "args": args}

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self.lock:
                job = self.jobs[job_id]
                if job.completed:
                    continue
                job.running, job.started_at = True, _now()
            if job.kind == "flow":
                self._run_flow(job)
                continue
            success, result = self._execute(job.path, job.args, job.id)
            with self.lock:
                if job.args.get("zombie") and self._runs.get(f"zombie:{job.id}", 0) == 0:
                    # the worker died: Windmill restarts the job from the start
                    self._runs[f"zombie:{job.id}"] = 1
                    self._queue.put(job.id)
                    continue
                self._complete(job, success, result)

    def _run_flow(self, job: Job) -> None:
        assert job.raw_flow is not None and job.flow_status is not None
        for i, module in enumerate(job.raw_flow["modules"]):
            status = job.flow_status["modules"][i]
            value = module["value"]
            branches = value["branches"] if value["type"] == "branchall" else [
                {"modules": [module]}]
            with self.lock:
                if job.completed:  # cancelled
                    return
                job.flow_status["step"] = i
                subs = [Job(str(uuid.uuid4()), "flow", job.path, {}, _now(), parent=job.id,
                            started_at=_now(), running=True) for _ in branches]
                for sub in subs:
                    self.jobs[sub.id] = sub
                status.update(type="InProgress", flow_jobs=[s.id for s in subs],
                              flow_jobs_success=[None] * len(subs),
                              branchall={"branch": 0, "len": len(subs)})
            threads = [threading.Thread(target=self._run_branch, args=(job, sub, b, status, k))
                       for k, (sub, b) in enumerate(zip(subs, branches, strict=True))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            with self.lock:
                ok = all(status["flow_jobs_success"])
                status["type"] = "Success" if ok else "Failure"
                if not ok:
                    failed = [s.result for s in subs if not s.success]
                    self._complete(job, False, failed[0])
                    return
        with self.lock:
            job.flow_status["step"] = len(job.raw_flow["modules"])
            self._complete(job, True, subs[-1].result if job.raw_flow["modules"] else None)

    def _run_branch(self, flow: Job, sub: Job, branch: dict[str, Any], status: dict[str, Any],
                    k: int) -> None:
        success, result = True, None
        for module in branch["modules"]:
            value = module["value"]
            args = {name: t.get("value") for name, t in value["input_transforms"].items()}
            attempts = 1 + int((module.get("retry") or {}).get("exponential", {})
                               .get("attempts", 0))
            for _ in range(attempts):
                success, result = self._execute(value["path"], args, sub.id)
                if success:
                    break
            if not success:
                break
        with self.lock:
            self._complete(sub, success, result)
            status["flow_jobs_success"][k] = success


def _json(status: int, value: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(value).encode()


_ROUTES: list[tuple[str, str, Callable[..., tuple[int, str, bytes]]]] = [
    (r"/jobs/run/p/(.+)", "POST", FakeWindmill.run_script),
    (r"/jobs/run/f/(.+)", "POST", FakeWindmill.run_flow),
    (r"/jobs_u/get/([^/]+)", "GET", FakeWindmill.get_job),
    (r"/jobs_u/completed/get_result_maybe/([^/]+)", "GET", FakeWindmill.result_maybe),
    (r"/jobs_u/queue/cancel/([^/]+)", "POST", FakeWindmill.cancel),
    (r"/jobs/list_filtered_uuids", "GET", FakeWindmill.list_uuids),
    (r"/flows/exists/(.+)", "GET", FakeWindmill.flow_exists),
    (r"/flows/create", "POST", FakeWindmill.create_flow),
    (r"/flows/update/(.+)", "POST", FakeWindmill.update_flow),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # buffered: status line, headers and body leave in one write, as from Windmill's server
    wbufsize = 1 << 16
    fake: FakeWindmill

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        req = Request(self.command, parts.path, parse_qs(parts.query, keep_blank_values=True),
                      {k.lower(): v for k, v in self.headers.items()}, body)
        status, ctype, payload = self.fake.handle(req)
        req.status, req.content_type = status, ctype
        if self.fake.on_request is not None:
            self.fake.on_request(req)
        with self.fake.lock:
            self.fake.requests.append(req)
            drop = (self.fake._drops > 0 and status == 201 and "/jobs/run/" in req.path)
            if drop:
                self.fake._drops -= 1
        if drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve


def main() -> None:
    """Serve a fake Windmill in this process (benchmarks run it beside the client): prints its
    URL, serves until stdin closes, then prints the executions count."""
    import argparse
    import sys

    ap = argparse.ArgumentParser()
    ap.add_argument("--script", action="append", default=[])
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    fake = FakeWindmill(scripts=set(args.script) or None, workers=args.workers)
    print(json.dumps({"url": fake.url, "token": fake.token, "workspace": fake.workspace}),
          flush=True)
    sys.stdin.read()
    kinds = {"get": "/jobs_u/get/", "list": "/jobs/list_filtered_uuids", "clock": "/jobs/db_clock",
             "result_maybe": "/get_result_maybe/", "run": "/jobs/run/"}
    with fake.lock:
        requests = {k: sum(1 for r in fake.requests if frag in r.path) for k, frag in kinds.items()}
        completed = {j.id: j.completed_at.timestamp() for j in fake.jobs.values()
                     if j.completed_at is not None}
        created = {j.id: j.created_at.timestamp() for j in fake.jobs.values()}
    print(json.dumps({"executions": len(fake.executions), "jobs": len(fake.jobs),
                      "requests": requests, "completed": completed, "created": created}),
          flush=True)
    fake.close()


if __name__ == "__main__":
    main()
