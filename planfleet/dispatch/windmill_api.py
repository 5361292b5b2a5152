"""Windmill's REST API, the few endpoints planfleet uses (one place for paths and status codes).

Paths are relative to ``{WINDMILL_URL}/api``; every request carries the bearer token. One
:class:`WindmillClient` holds one ``httpx.Client``: keep-alive connections, at most
``concurrency`` of them.

Errors: :class:`DispatchError` with ``permanent`` set when retrying cannot help (401, 403,
404, a 400 other than "already exists") and ``misconfigured`` for the answers that mean the
token, workspace or script path is wrong. 5xx, 429, timeouts and connection errors are
transient.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from planfleet.dispatch import DispatchError

#: Statuses that say the request is wrong in a way a retry will not fix.
_MISCONFIGURED = {401: "unauthorized (check WINDMILL_TOKEN)",
                  403: "forbidden (check the token's rights in the workspace)",
                  404: "not found (check WINDMILL_WORKSPACE and the path)"}
#: Page size of listings (Windmill's maximum).
PER_PAGE = 100
#: Pages read from one listing at most (a guard: 100 pages = 10,000 ids).
MAX_PAGES = 100
#: What an older Windmill answers for the listing endpoints and the db clock.
_NO_LISTING = (404, 501)


class ListingUnavailable(DispatchError):
    """This Windmill has no job listing (or no db clock): look jobs up one by one."""


class WindmillClient:
    def __init__(
        self, url: str, token: str, workspace: str, *, concurrency: int = 8,
        timeout: float = 30.0, transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.workspace = workspace
        self._ws = f"/w/{quote(workspace, safe='')}"
        limits = httpx.Limits(max_connections=concurrency,
                              max_keepalive_connections=concurrency)
        self.http = httpx.Client(
            base_url=f"{self.url}/api",
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            # headers and body leave in separate writes: without TCP_NODELAY, Nagle holds
            # the body back until the server's delayed ACK (~40 ms a request)
            transport=transport or httpx.HTTPTransport(
                limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]),
        )
        #: requests sent, by kind (benchmarks and tests read it)
        self.requests: dict[str, int] = {}

    def close(self) -> None:
        self.http.close()

    def job_link(self, job_id: uuid.UUID | str) -> str:
        """The job's page in Windmill's UI."""
        return f"{self.url}/run/{job_id}?workspace={quote(self.workspace, safe='')}"

    # -- transport ---------------------------------------------------------------------------

    def _send(self, kind: str, method: str, path: str, *, what: str,
              params: Mapping[str, Any] | None = None, json: Any = None) -> httpx.Response:
        self.requests[kind] = self.requests.get(kind, 0) + 1
        try:
            return self.http.request(method, path, params=params, json=json)
        except httpx.TimeoutException as exc:
            raise DispatchError(f"Windmill did not answer in time for {what}: {exc}") from exc
        except httpx.TransportError as exc:
            raise DispatchError(f"cannot reach Windmill at {self.url} for {what}: "
                                f"{type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _fail(resp: httpx.Response, what: str) -> DispatchError:
        body = resp.text.strip()[:300]
        code = resp.status_code
        if code in _MISCONFIGURED:
            return DispatchError(
                f"Windmill answered {code} {_MISCONFIGURED[code]} for {what}: {body}",
                permanent=True, misconfigured=True)
        if code >= 500 or code == 429:
            return DispatchError(f"Windmill answered {code} for {what}: {body}")
        return DispatchError(f"Windmill refused {what} with {code}: {body}", permanent=True)

    def _ok(self, resp: httpx.Response, what: str, *codes: int) -> httpx.Response:
        if resp.status_code not in (codes or (200,)):
            raise self._fail(resp, what)
        return resp

    # -- jobs --------------------------------------------------------------------------------

    def _run(self, kind: str, path: str, job_id: uuid.UUID, args: Mapping[str, Any],
             what: str) -> bool:
        resp = self._send(kind, "POST", f"{self._ws}/jobs/run/{path}",
                          params={"job_id": str(job_id)}, json=dict(args), what=what)
        if resp.status_code == 400 and "already exists" in resp.text:
            return False  # this id was submitted before: the job exists
        self._ok(resp, what, 201)
        return True

    def run_script(self, job_id: uuid.UUID, script: str, args: Mapping[str, Any]) -> bool:
        """Start ``script`` as job ``job_id``; False when that job id exists already."""
        return self._run("run_script", f"p/{script}", job_id, args, f"script {script}")

    def run_flow(self, job_id: uuid.UUID, flow: str, args: Mapping[str, Any]) -> bool:
        """Start flow ``flow`` as job ``job_id``; False when that job id exists already."""
        return self._run("run_flow", f"f/{flow}", job_id, args, f"flow {flow}")

    def get_job(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        """The job (queued, running or completed), None when Windmill does not know it."""
        what = f"job {job_id}"
        resp = self._send("get_job", "GET", f"{self._ws}/jobs_u/get/{job_id}",
                          params={"no_logs": "true", "no_code": "true"}, what=what)
        if resp.status_code == 404:
            return None
        job: dict[str, Any] = self._ok(resp, what).json()
        return job

    def result_maybe(self, job_id: uuid.UUID) -> dict[str, Any]:
        """``{completed, result, success, started}``; unknown ids read as not completed."""
        what = f"the result of job {job_id}"
        resp = self._send("result_maybe", "GET",
                          f"{self._ws}/jobs_u/completed/get_result_maybe/{job_id}",
                          params={"get_started": "true"}, what=what)
        out: dict[str, Any] = self._ok(resp, what).json()
        return out

    def cancel(self, job_id: uuid.UUID, reason: str) -> bool:
        """Cancel a queued or running job; False when it is not in the queue any more."""
        what = f"cancelling job {job_id}"
        resp = self._send("cancel", "POST", f"{self._ws}/jobs_u/queue/cancel/{job_id}",
                          json={"reason": reason}, what=what)
        if resp.status_code in (400, 404):
            return False  # finished (or never queued): nothing to cancel
        self._ok(resp, what)
        return True

    def job_ids(self, **filters: str) -> set[str]:
        """Ids of the jobs matching ``filters`` (``list_filtered_uuids``), every page."""
        found: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            resp = self._send("list", "GET", f"{self._ws}/jobs/list_filtered_uuids",
                              params={**filters, "per_page": str(PER_PAGE), "page": str(page)},
                              what="listing jobs")
            if resp.status_code in _NO_LISTING:
                raise ListingUnavailable(f"Windmill answered {resp.status_code} for listing jobs")
            ids = self._ok(resp, "listing jobs").json()
            found.update(ids)
            if len(ids) < PER_PAGE:
                break
        return found

    def clock(self) -> float:
        """Seconds between Windmill's database clock and ours (theirs minus ours)."""
        before = time.time()
        resp = self._send("clock", "GET", "/jobs/db_clock", what="the clock")
        if resp.status_code in _NO_LISTING:
            raise ListingUnavailable(f"Windmill answered {resp.status_code} for the clock")
        self._ok(resp, "the clock")
        after = time.time()
        return float(resp.json()) / 1000.0 - (before + after) / 2

    # -- flows -------------------------------------------------------------------------------

    def deploy_flow(self, path: str, flow: Mapping[str, Any]) -> None:
        """Create the flow at ``path``, or update it when it exists."""
        what = f"flow {path}"
        exists = self._ok(self._send("flow", "GET", f"{self._ws}/flows/exists/{path}",
                                     what=what), what).json()
        body = {**flow, "path": path}
        if exists:
            self._ok(self._send("flow", "POST", f"{self._ws}/flows/update/{path}", json=body,
                                what=what), what)
        else:
            resp = self._send("flow", "POST", f"{self._ws}/flows/create", json=body, what=what)
            if resp.status_code == 400 and "already exists" in resp.text:
                self.deploy_flow(path, flow)  # created meanwhile by another worker
                return
            self._ok(resp, what, 201)


def server_time(offset: float) -> str:
    """Now on Windmill's clock, as the RFC 3339 text its filters take."""
    return dt.datetime.fromtimestamp(time.time() + offset, dt.UTC).isoformat()
