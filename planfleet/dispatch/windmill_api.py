"""Windmill's REST API, the few endpoints planfleet uses (one place for paths and status codes).

Paths are relative to ``{WINDMILL_URL}/api``; every request carries the bearer token. One
:class:`WindmillClient` holds one urllib3 connection pool: keep-alive connections, at most
``concurrency`` of them. urllib3 rather than httpx (which the rest of the project uses): a
fleet sends two requests per step, and urllib3 spends less than half httpx's CPU on each
(measured on loopback: about 0.43 against 1.0 ms a request).

Errors: :class:`DispatchError` with ``permanent`` set when retrying cannot help (401, 403,
404, a 400 other than "already exists") and ``misconfigured`` for the answers that mean the
token, workspace or script path is wrong. 5xx, 429, timeouts and connection errors are
transient.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json as jsonlib
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3

from planfleet import script_paths
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


@dataclasses.dataclass(frozen=True)
class Answer:
    """Windmill's answer to one request."""

    status_code: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


class WindmillClient:
    def __init__(
        self, url: str, token: str, workspace: str, *, concurrency: int = 8,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.workspace = workspace
        self._ws = f"/w/{quote(workspace, safe='')}"
        self._api = urlsplit(self.url).path + "/api"
        # no retries (the callers decide: a step's submission is retried under its id) and
        # no redirects followed; TCP_NODELAY is urllib3's default (headers and body leave in
        # separate writes: Nagle would hold the body until the server's delayed ACK)
        self.http = urllib3.connection_from_url(
            self.url, maxsize=concurrency, block=True, retries=False,
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            headers={"Authorization": f"Bearer {token}"})
        self._pool_timeout = timeout
        #: requests sent, by kind (benchmarks and tests read it)
        self.requests: dict[str, int] = {}

    def close(self) -> None:
        self.http.close()

    def job_link(self, job_id: uuid.UUID | str) -> str:
        """The job's page in Windmill's UI."""
        return f"{self.url}/run/{job_id}?workspace={quote(self.workspace, safe='')}"

    # -- transport ---------------------------------------------------------------------------

    def _send(self, kind: str, method: str, path: str, *, what: str,
              params: Mapping[str, Any] | None = None, json: Any = None) -> Answer:
        self.requests[kind] = self.requests.get(kind, 0) + 1
        url = self._api + path + (f"?{urlencode(params)}" if params else "")
        body, headers = None, None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            headers = {**self.http.headers, "Content-Type": "application/json"}
        try:
            resp = self.http.urlopen(method, url, body=body, headers=headers, redirect=False,
                                     pool_timeout=self._pool_timeout)
        except urllib3.exceptions.NewConnectionError as exc:  # (a ConnectTimeoutError, too)
            raise DispatchError(f"cannot reach Windmill at {self.url} for {what}: "
                                f"{type(exc).__name__}: {exc}") from exc
        except urllib3.exceptions.TimeoutError as exc:
            raise DispatchError(f"Windmill did not answer in time for {what}: {exc}") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise DispatchError(f"cannot reach Windmill at {self.url} for {what}: "
                                f"{type(exc).__name__}: {exc}") from exc
        return Answer(resp.status, resp.data)

    @staticmethod
    def _fail(resp: Answer, what: str) -> DispatchError:
        body = resp.text.strip()[:300]
        code = resp.status_code
        if code in _MISCONFIGURED:
            return DispatchError(
                f"Windmill answered {code} {_MISCONFIGURED[code]} for {what}: {body}",
                permanent=True, misconfigured=True)
        if code >= 500 or code == 429:
            return DispatchError(f"Windmill answered {code} for {what}: {body}")
        return DispatchError(f"Windmill refused {what} with {code}: {body}", permanent=True)

    def _ok(self, resp: Answer, what: str, *codes: int) -> Answer:
        if resp.status_code not in (codes or (200,)):
            raise self._fail(resp, what)
        return resp

    @staticmethod
    def _path(path: str, what: str) -> str:
        """``path`` checked against Windmill's grammar again (a stored plan may predate the
        check, or come from elsewhere) and URL-encoded segment by segment: no path can climb
        out of ``/api/w/{workspace}/…`` with the fleet's token."""
        why = script_paths.problem(path)
        if why is not None:
            raise DispatchError(f"refused to send {what}: {why}", permanent=True)
        return "/".join(quote(part, safe="") for part in path.split("/"))

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
        what = f"script {script[:300]}"
        return self._run("run_script", f"p/{self._path(script, what)}", job_id, args, what)

    def run_flow(self, job_id: uuid.UUID, flow: str, args: Mapping[str, Any]) -> bool:
        """Start flow ``flow`` as job ``job_id``; False when that job id exists already."""
        what = f"flow {flow[:300]}"
        return self._run("run_flow", f"f/{self._path(flow, what)}", job_id, args, what)

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
        what = f"flow {path[:300]}"
        encoded = self._path(path, what)
        exists = self._ok(self._send("flow", "GET", f"{self._ws}/flows/exists/{encoded}",
                                     what=what), what).json()
        body = {**flow, "path": path}
        if exists:
            self._ok(self._send("flow", "POST", f"{self._ws}/flows/update/{encoded}",
                                json=body, what=what), what)
        else:
            resp = self._send("flow", "POST", f"{self._ws}/flows/create", json=body, what=what)
            if resp.status_code == 400 and "already exists" in resp.text:
                self.deploy_flow(path, flow)  # created meanwhile by another worker
                return
            self._ok(resp, what, 201)


def server_time(offset: float) -> str:
    """Now on Windmill's clock, as the RFC 3339 text its filters take."""
    return dt.datetime.fromtimestamp(time.time() + offset, dt.UTC).isoformat()
