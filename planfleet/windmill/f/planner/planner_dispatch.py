"""Pulls a YouTrack project's open issues and hands them to planfleet as the next version of
one source (``youtrack:<project>[?<query>]``); returns what the fleet recorded.

Runs on a schedule (every 15 minutes). Nothing is planned or dispatched here: the fleet plans
the version, and when the source's plan is building it revises it — issues resolved in
YouTrack leave, new ones join, unchanged ones are kept or followed — so no issue is dispatched
twice across pulls and nobody needs to move issues out of the query by hand. Needs the
``planfleet`` package on the Windmill worker (a worker image with it installed, or a
``# requirements:`` line naming your package index).

Where YouTrack and the fleet's control plane are, and the tokens for them, are the fleet's
configuration, never arguments: any task file may name this script with arguments of its
choosing, and must not make it fetch or post to a URL it picked. They come from the worker's
environment (``YOUTRACK_URL``, ``YOUTRACK_TOKEN``, ``PLANFLEET_API_URL``,
``PLANFLEET_API_TOKEN``) or else from the Windmill variables ``f/planner/youtrack_url``,
``f/planner/youtrack_token``, ``f/planner/planfleet_api_url`` and
``f/planner/planfleet_api_token``.
"""

import json
import os

import httpx
import wmill

from planfleet import youtrack


def _setting(env: str, variable: str | None) -> str | None:
    """A connection setting: the worker's environment, else a Windmill variable."""
    value = os.environ.get(env)
    getter = getattr(wmill, "get_variable", None)
    if not value and variable and getter is not None:
        try:
            value = getter(variable)
        except Exception:  # noqa: BLE001 - an unset variable is reported below
            value = None
    return value or None


def _required(env: str, variable: str) -> str:
    value = _setting(env, variable)
    if not value:
        raise RuntimeError(f"{env} is not configured: set the Windmill variable {variable} "
                           f"or the worker's environment variable {env}")
    return value


def main(
    project: str,
    query: str = "",
) -> dict:
    url = _required("YOUTRACK_URL", "f/planner/youtrack_url")
    token = _required("YOUTRACK_TOKEN", "f/planner/youtrack_token")
    api = _required("PLANFLEET_API_URL", "f/planner/planfleet_api_url").rstrip("/")
    api_token = _required("PLANFLEET_API_TOKEN", "f/planner/planfleet_api_token")
    issues = youtrack.fetch_issues(url, token, project, query or None)
    doc = youtrack.document(issues, project=project, query=query or None)
    name = youtrack.file_name(project, query or None)
    resp = httpx.post(f"{api}/api/inputs", params={"filename": name},
                      content=json.dumps(doc).encode(), timeout=60,
                      headers={"Authorization": f"Bearer {api_token}",
                               "Content-Type": "application/json"})
    if resp.status_code >= 400:
        raise RuntimeError(f"the control plane refused the pull: {resp.status_code} "
                           f"{resp.reason_phrase}")
    return {"issues": len(issues), **resp.json()}
