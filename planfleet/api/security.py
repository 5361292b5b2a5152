"""Who may use the API and the UI, and the headers every answer carries.

Two kinds of clients reach the API: programs with ``Authorization: Bearer <token>`` and
browsers with the session cookie that ``/login`` sets (HttpOnly, SameSite=Strict: page scripts
never see the token). :func:`decide` is the rule, a pure function of the request's facts;
:class:`Guard` is the ASGI middleware that applies it in front of everything the app serves,
mounted apps (``/rq``) included, and adds the security headers to every answer.

With a token set, every route needs it except ``/healthz``, ``/readyz``, ``/login`` and the
static assets (``/favicon.ico`` among them); ``/metrics`` also takes its own token
(``PLANFLEET_METRICS_TOKEN``). Without a token the API answers loopback clients only, for
loopback host names only (DNS rebinding). Requests a browser makes on another site's behalf
are refused either way.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import html
import ipaddress
import json
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, urlsplit

#: the browser session's cookie
SESSION_COOKIE = "planfleet_session"
#: paths anyone may reach: up/down probes, the login page, the UI's own assets
OPEN_PATHS = ("/healthz", "/readyz", "/login", "/logout", "/favicon.ico")
OPEN_PREFIXES = ("/static/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

#: every page: scripts and styles from this origin only, no inline script or event handler,
#: never framed
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
#: Swagger UI sets inline styles
CSP_DOCS = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: derived from it, so that every API process of
    a fleet accepts it and a new token ends every session, but not the token itself."""
    return hmac.new(token.encode(), b"planfleet-ui-session-v1", hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the rule looks at in a request."""

    method: str
    path: str
    scheme: str = "http"
    host: str = ""
    client: str | None = None
    authorization: str | None = None
    session: str | None = None
    origin: str | None = None
    fetch_site: str | None = None
    fetch_mode: str | None = None


@dataclasses.dataclass(frozen=True)
class Policy:
    """The fleet's secrets: the API token (None: loopback only) and the metrics token."""

    token: str | None = None
    metrics_token: str | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``status`` None: let it through; else refuse with ``status`` and ``detail``."""

    status: int | None = None
    detail: str = ""
    #: who the request is: "bearer", "session", "metrics", "anonymous"
    principal: str = "anonymous"

    @property
    def allowed(self) -> bool:
        return self.status is None


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and secrets.compare_digest(a.encode(), b.encode())


def host_name(host: str) -> str:
    """The name part of a Host header (``[::1]:8000`` -> ``[::1]``, ``a:80`` -> ``a``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(address: str | None) -> bool:
    """Whether a peer address is the local machine."""
    if address is None:
        return False
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def cross_site(f: Facts) -> bool:
    """Whether a browser sent this request on another site's behalf (Fetch Metadata, or the
    Origin header where a browser sends no Fetch Metadata)."""
    if f.fetch_site is not None:
        return f.fetch_site not in ("same-origin", "none")
    if f.origin is not None:
        # the host only: behind a TLS proxy the browser's https origin reaches us as http
        return urlsplit(f.origin).netloc.lower() != f.host.lower()
    return False


def _navigation(f: Facts) -> bool:
    # following a link from elsewhere to a page: harmless to read (the other site cannot see
    # the answer), and the cookie does not come with it (SameSite=Strict). /rq has GETs that act.
    return (f.method in ("GET", "HEAD") and f.fetch_mode == "navigate"
            and not f.path.startswith("/rq"))


def decide(f: Facts, policy: Policy) -> Verdict:
    """Whether the request may go on, and as whom."""
    if policy.token is None:
        if not is_loopback(f.client):
            return Verdict(403, "this fleet has no API token: it answers the local machine only")
        if host_name(f.host) not in LOOPBACK_NAMES:
            return Verdict(403, f"host {host_name(f.host)!r} refused: without an API token "
                                "only localhost, 127.0.0.1 and [::1] are served")
    open_path = f.path in OPEN_PATHS or f.path.startswith(OPEN_PREFIXES)
    if cross_site(f) and not _navigation(f):
        return Verdict(403, "cross-site request refused")
    if open_path:
        return Verdict()
    bearer = _bearer(f.authorization)
    if f.path == "/metrics" and policy.metrics_token is not None and _same(
            bearer, policy.metrics_token):
        return Verdict(principal="metrics")
    if policy.token is not None and bearer is not None:
        if _same(bearer, policy.token):
            return Verdict(principal="bearer")
        return Verdict(403, "wrong API token")
    if policy.token is None:
        if f.path == "/metrics" and policy.metrics_token is not None:
            return Verdict(401, "/metrics needs Authorization: Bearer <PLANFLEET_METRICS_TOKEN>")
        return Verdict()
    if _same(f.session, session_value(policy.token)):
        return Verdict(principal="session")
    if f.path == "/metrics":
        return Verdict(401, "/metrics needs Authorization: Bearer <PLANFLEET_METRICS_TOKEN> "
                            "(or the API token)")
    return Verdict(401, "this needs Authorization: Bearer <PLANFLEET_API_TOKEN> "
                        "(or, in a browser, signing in at /login)")


def wants_html(method: str, accept: str | None) -> bool:
    """A browser asking for a page (not a script asking for data)."""
    return method in ("GET", "HEAD") and "text/html" in (accept or "")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this site, nothing else."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def script_hashes(html: bytes) -> list[str]:
    """CSP source expressions for the inline ``<script>`` blocks of a page we serve but did not
    write (rq-dashboard): exactly those run, nothing injected into them later."""
    out = []
    for m in re.finditer(rb"<script(?![^>]*\bsrc=)(?![^>]*type=\"text/template\")[^>]*>(.*?)</script>",
                         html, re.S | re.I):
        digest = base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()
        out.append(f"'sha256-{digest}'")
    return out


def escape_strings(value: Any) -> Any:
    """``value`` (parsed JSON) with every string HTML-escaped, keys included: for a page that
    inserts the strings as HTML (rq-dashboard's job texts), so they show as text."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list):
        return [escape_strings(v) for v in value]
    if isinstance(value, dict):
        return {html.escape(k): escape_strings(v) for k, v in value.items()}
    return value


def _cookie(headers: dict[str, str]) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE:
            return value
    return None


class Guard:
    """ASGI middleware: :func:`decide` before the app, security headers on every answer."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        path: str = scope.get("root_path", "") + scope["path"]
        client = scope.get("client")
        facts = Facts(
            method=scope["method"], path=path, scheme=scope.get("scheme", "http"),
            host=headers.get("host", ""), client=client[0] if client else None,
            authorization=headers.get("authorization"), session=_cookie(headers),
            origin=headers.get("origin"), fetch_site=headers.get("sec-fetch-site"),
            fetch_mode=headers.get("sec-fetch-mode"))
        verdict = decide(facts, self.policy)
        scope.setdefault("state", {})["principal"] = verdict.principal
        csp = CSP_DOCS if path == "/docs" else CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.decode("latin-1").lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items() if k not in have]
                if "content-security-policy" not in have:
                    extra.append((b"content-security-policy", csp.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        if verdict.allowed:
            await self.app(scope, receive, send_with_headers)
            return
        status = verdict.status or 403
        if status == 401 and wants_html(facts.method, headers.get("accept")):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            body = b""
            out_headers = [(b"location", f"/login?next={quote(target, safe='')}".encode())]
            status = 303
        else:
            body = json.dumps({"detail": verdict.detail}).encode()
            out_headers = [(b"content-type", b"application/json")]
            if status == 401:
                out_headers.append((b"www-authenticate", b"Bearer"))
        out_headers.append((b"content-length", str(len(body)).encode()))
        await send_with_headers({"type": "http.response.start", "status": status,
                                 "headers": out_headers})
        await send_with_headers({"type": "http.response.body", "body": body})
