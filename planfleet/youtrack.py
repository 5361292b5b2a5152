"""Pulling a YouTrack project's open issues into a task file the watcher picks up.

``GET {url}/api/issues?query=project: {project} #Unresolved&fields=…`` page by page (``$top`` /
``$skip``), with Priority, Estimation and the dependency links the planner's YouTrack format
reads (see :mod:`planfleet.planner.formats`), in an envelope naming the project and the search
terms: every pull of them is a version of one source. The file is written beside its final name under a
hidden temporary name, flushed to disk, then renamed into place: the watcher never sees half
of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import httpx

from planfleet import sources
from planfleet.exceptions import PlanfleetError

#: The issue fields the planner reads (YouTrack's ``fields`` syntax).
FIELDS = (
    "idReadable,summary,resolved,"
    "customFields(name,value(name,minutes,presentation)),"
    "links(direction,linkType(name,sourceToTarget,targetToSource),issues(idReadable,resolved),"
    "trimmedIssues(idReadable,resolved))"
)
#: Issues per request.
PAGE = 100
#: Issues pulled at most (a guard against a query that matches a whole instance).
MAX_ISSUES = 20_000


class YouTrackError(PlanfleetError):
    """YouTrack could not be read."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


def query_for(project: str, query: str | None = None) -> str:
    """The YouTrack search: the project's unresolved issues, narrowed by ``query``."""
    return f"project: {{{project}}} #Unresolved" + (f" {query}" if query else "")


def fetch_issues(url: str, token: str, project: str, query: str | None = None, *,
                 client: httpx.Client | None = None, timeout: float = 30.0,
                 quote_body: bool = False) -> list[dict[str, Any]]:
    """The project's open issues, every page.

    An error quotes the answer's status line; ``quote_body`` adds YouTrack's own message
    (for an operator at a terminal, who chose the URL: never in a job's error that others
    read).
    """
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    search = query_for(project, query)
    issues: list[dict[str, Any]] = []
    try:
        while len(issues) < MAX_ISSUES:
            try:
                resp = http.get(f"{url.rstrip('/')}/api/issues", params={
                    "query": search, "fields": FIELDS, "$top": str(PAGE),
                    "$skip": str(len(issues))},
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            except httpx.HTTPError as exc:
                raise YouTrackError(f"cannot reach YouTrack at {url}: {exc}",
                                    unavailable=True) from exc
            if resp.status_code in (401, 403):
                raise YouTrackError(f"YouTrack refused the token ({resp.status_code}): "
                                    f"{_message(resp, quote_body)}")
            if resp.status_code >= 500:
                raise YouTrackError(f"YouTrack answered {resp.status_code}: {_message(resp, quote_body)}",
                                    unavailable=True)
            if resp.status_code != 200:
                raise YouTrackError(f"YouTrack refused the search {search!r} "
                                    f"({resp.status_code}): {_message(resp, quote_body)}")
            page = resp.json()
            if not isinstance(page, list):
                raise YouTrackError(f"YouTrack answered {type(page).__name__}, not a list of "
                                    f"issues")
            issues += page
            if len(page) < PAGE:
                break
    finally:
        if own:
            http.close()
    return issues


def _message(resp: httpx.Response, quote_body: bool = False) -> str:
    """The answer's status line; its body only when ``quote_body`` (a body may hold whatever
    the server chose to say, and a job's error ends up where others read it)."""
    status = resp.reason_phrase or "no reason given"
    if not quote_body:
        return status
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("error") or body)[:200]
    return str(body)[:200]


def parse_priorities(pairs: list[str]) -> dict[str, int]:
    """``["Show-stopper=100", "Nice to have=10"]`` as a mapping; ValueError naming a bad pair."""
    out: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"priority {pair!r} is not NAME=NUMBER")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"priority {pair!r}: {value!r} is not a whole number") from None
    return out


def document(issues: list[dict[str, Any]], *, project: str, query: str | None = None,
             estimate_field: str = "Estimation",
             priorities: dict[str, int] | None = None) -> dict[str, Any]:
    """What the task file holds: the envelope the planner reads, with the project and the
    search terms pulled (every pull of them is a version of one source,
    ``youtrack:<project>[?<query>]``: see :mod:`planfleet.sources`) and, when not the
    defaults, the estimate field and custom priorities."""
    doc: dict[str, Any] = {"format": "youtrack", "project": project}
    terms = sources.normalise_query(query)
    if terms:
        doc["query"] = terms
    if estimate_field != "Estimation" or priorities:
        doc.update(estimate_field=estimate_field, priorities=priorities or {})
    doc["issues"] = issues
    return doc


def file_name(project: str, query: str | None = None) -> str:
    """The task file of a project's pulls: ``youtrack-<project>.json``, or
    ``youtrack-<project>-<hash of the search terms>.json``."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", project) or "project"
    terms = sources.normalise_query(query)
    tag = f"-{hashlib.sha256(terms.encode()).hexdigest()[:8]}" if terms else ""
    return f"youtrack-{safe}{tag}.json"


def write_task_file(issues: Any, folder: Path, project: str, query: str | None = None) -> Path:
    """Write ``issues`` (:func:`document`'s envelope, or a plain list) atomically as
    ``youtrack-<project>.json`` in ``folder`` (``youtrack-<project>-<hash of the query>.json``
    with search terms): every pull replaces the file of the last one, a new version of its
    source for the watcher."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / file_name(project, query)
    tmp = folder / f".{final.name}.{os.getpid()}.tmp"  # hidden: the watcher ignores it
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(issues, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final
