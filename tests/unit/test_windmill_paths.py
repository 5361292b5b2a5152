"""The Windmill client sends only script paths of Windmill's grammar, URL-encoded, whatever
a stored plan says (checked again at dispatch)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from planfleet.dispatch import DispatchError
from planfleet.dispatch.windmill_api import WindmillClient


@pytest.fixture
def sent() -> list[httpx.Request]:
    return []


@pytest.fixture
def client(sent: list[httpx.Request]) -> WindmillClient:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if "/flows/exists/" in request.url.path:
            return httpx.Response(200, json=False)
        return httpx.Response(201, text="ok")

    return WindmillClient("http://windmill.test", "secret-token", "admins",
                          transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    "path",
    ["f/../../scripts/create", "u/admin/../../../variables/create", "f/x/../../../../../../etc",
     "f/a/b?x=1", "f/a/b%2F..%2F..", "../../other", "f/a/" + "x" * 300, "f/a/b\u0000"],
)
def test_a_script_path_outside_the_grammar_is_never_sent(
    client: WindmillClient, sent: list[httpx.Request], path: str
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
    client: WindmillClient, sent: list[httpx.Request]
) -> None:
    job = uuid.uuid4()
    assert client.run_script(job, "f/planner/solver_dispatch", {"a": 1})
    (req,) = sent
    assert req.url.path == "/api/w/admins/jobs/run/p/f/planner/solver_dispatch"
    assert req.url.params["job_id"] == str(job)
    client.deploy_flow("f/planfleet/plan_1", {"value": {"modules": []}})
    assert [r.url.path for r in sent[1:]] == ["/api/w/admins/flows/exists/f/planfleet/plan_1",
                                             "/api/w/admins/flows/create"]
