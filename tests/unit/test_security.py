"""The API's access rule (planfleet.api.security.decide) on plain request facts."""

from __future__ import annotations

import pytest

from planfleet.api import security
from planfleet.api.security import Facts, Policy, decide

TOKEN = Policy(token="t0k", metrics_token="prom")
NONE = Policy()


def f(path: str = "/api/plans", method: str = "GET", **kw: str) -> Facts:
    kw.setdefault("host", "127.0.0.1:8080")
    kw.setdefault("client", "127.0.0.1")
    return Facts(method=method, path=path, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", ["/api/plans", "/", "/rq/", "/docs", "/openapi.json",
                                  "/api/pending-inputs/1/content", "/metrics"])
def test_with_a_token_nothing_is_read_without_it(path: str) -> None:
    assert decide(f(path), TOKEN).status == 401
    assert decide(f(path, authorization="Bearer t0k"), TOKEN).principal == "bearer"
    assert decide(f(path, session=security.session_value("t0k")), TOKEN).principal == "session"
    assert decide(f(path, authorization="Bearer nope"), TOKEN).status == 403
    assert decide(f(path, session="forged"), TOKEN).status == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/login", "/static/app.js",
                                  "/favicon.ico"])
def test_the_probes_and_the_sign_in_page_stay_open(path: str) -> None:
    assert decide(f(path), TOKEN).allowed


def test_the_metrics_token_opens_metrics_only() -> None:
    assert decide(f("/metrics", authorization="Bearer prom"), TOKEN).principal == "metrics"
    assert decide(f("/api/plans", authorization="Bearer prom"), TOKEN).status == 403


def test_the_session_is_derived_from_the_token_not_the_token() -> None:
    assert security.session_value("t0k") != "t0k"
    assert security.session_value("t0k") != security.session_value("other")


@pytest.mark.parametrize("headers", [{"fetch_site": "cross-site"}, {"fetch_site": "same-site"},
                                     {"origin": "http://evil.example"}])
@pytest.mark.parametrize("policy", [TOKEN, NONE])
def test_cross_site_requests_are_refused(headers: dict[str, str], policy: Policy) -> None:
    session = security.session_value("t0k")
    v = decide(f("/api/settings", "PUT", session=session, **headers), policy)
    assert v.status == 403 and v.detail == "cross-site request refused"
    assert decide(f("/rq/requeue/q", "GET", session=session, fetch_mode="navigate",
                    **headers), policy).status == 403


def test_same_origin_and_programs_go_through() -> None:
    session = security.session_value("t0k")
    for extra in ({"fetch_site": "same-origin"}, {"origin": "http://127.0.0.1:8080"}, {}):
        assert decide(f("/api/settings", "PUT", session=session, **extra), TOKEN).allowed


def test_a_link_from_elsewhere_still_opens_a_page() -> None:
    v = decide(f("/plans/3", fetch_site="cross-site", fetch_mode="navigate"), NONE)
    assert v.allowed


def test_without_a_token_only_loopback_and_local_host_names() -> None:
    assert decide(f(), NONE).allowed
    assert decide(f(host="localhost"), NONE).allowed
    assert decide(f(host="[::1]:8080", client="::1"), NONE).allowed
    assert decide(f(client="192.0.2.1"), NONE).status == 403
    assert decide(f(host="rebind.evil.example:8080"), NONE).status == 403


@pytest.mark.parametrize("value, expected", [
    ("/plans/1?x=1", "/plans/1?x=1"), ("//evil.example", "/"), ("https://evil.example", "/"),
    ("/\\evil.example", "/"), ("", "/"), (None, "/")])
def test_after_signing_in_only_paths_of_this_site(value: str | None, expected: str) -> None:
    assert security.safe_next(value) == expected


def test_script_hashes_cover_inline_scripts_only() -> None:
    html = (b'<script src="/a.js"></script><script type="text/template"><%= x %></script>'
            b'<script type="text/javascript">var a = 1;</script>')
    (h,) = security.script_hashes(html)
    assert h.startswith("'sha256-")


def test_job_texts_for_rq_dashboard_are_escaped_everywhere() -> None:
    doc = {"job": {"exc_info": "<img src=x onerror=alert(1)>", "id": "abc123",
                   "depends_on": ["<b>"], "n": 3, "ok": None}}
    assert security.escape_strings(doc) == {"job": {
        "exc_info": "&lt;img src=x onerror=alert(1)&gt;", "id": "abc123",
        "depends_on": ["&lt;b&gt;"], "n": 3, "ok": None}}
