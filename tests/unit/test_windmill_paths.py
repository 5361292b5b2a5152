"""The Windmill client sends only script paths of Windmill's grammar, URL-encoded, whatever
a stored plan says (checked again at dispatch)."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from planfleet.dispatch import DispatchError
from planfleet.dispatch.windmill_api import WindmillClient


@pytest.fixture
def sent() -> list[str]:
    """The request lines' targets (path and query) a loopback server received."""
    return []


@pytest.fixture
def client(sent: list[str]) -> Iterator[WindmillClient]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, code: int, body: bytes) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            sent.append(self.path)
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._answer(200, b"false")  # flows/exists: no

        def do_POST(self) -> None:  # noqa: N802
            self._answer(201, b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = WindmillClient(f"http://127.0.0.1:{server.server_address[1]}", "secret-token",
                            "admins")
    yield client
    client.close()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "path",
    ["f/../../scripts/create", "u/admin/../../../variables/create", "f/x/../../../../../../etc",
     "f/a/b?x=1", "f/a/b%2F..%2F..", "../../other", "f/a/" + "x" * 300, "f/a/b\u0000"],
)
def test_a_script_path_outside_the_grammar_is_never_sent(
    client: WindmillClient, sent: list[str], path: str
) -> None:
    with pytest.raises(DispatchError) as info:
        client.run_script(uuid.uuid4(), path, {})
    assert info.value.permanent
    with pytest.raises(DispatchError):
        client.run_flow(uuid.uuid4(), path, {})
    with pytest.raises(DispatchError):
        client.deploy_flow(path, {"value": {"modules": []}})
    assert sent == []


def test_a_script_path_in_the_grammar_is_sent_under_the_workspace(
    client: WindmillClient, sent: list[str]
) -> None:
    job = uuid.uuid4()
    assert client.run_script(job, "f/planner/solver_dispatch", {"a": 1})
    (target,) = sent
    url = urlsplit(target)
    assert url.path == "/api/w/admins/jobs/run/p/f/planner/solver_dispatch"
    assert parse_qs(url.query)["job_id"] == [str(job)]
    client.deploy_flow("f/planfleet/plan_1", {"value": {"modules": []}})
    assert [urlsplit(t).path for t in sent[1:]] == [
        "/api/w/admins/flows/exists/f/planfleet/plan_1", "/api/w/admins/flows/create"]
