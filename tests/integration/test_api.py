"""The REST API on real Postgres and Redis: every endpoint and its error paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rq
from fastapi.testclient import TestClient

from planfleet import models
from planfleet.api import create_app
from planfleet.config import Config
from planfleet.runtime import Runtime, open_runtime

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TASKS = b"tasks: [{id: A, estimate: 10}, {id: B, estimate: 5, depends_on: [A]}]"


@pytest.fixture
def rt(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Runtime]:
    r = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token=TOKEN,
                            watch_root=tmp_path))
    yield r
    r.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """A client holding the API token."""
    with TestClient(create_app(rt), raise_server_exceptions=False, headers=AUTH) as c:
        yield c


@pytest.fixture
def anon(rt: Runtime) -> Iterator[TestClient]:
    """A client without the token."""
    with TestClient(create_app(rt), raise_server_exceptions=False) as c:
        yield c


def local(app: Any, **kw: Any) -> TestClient:
    """A client on the local machine (a fleet without a token serves nothing else)."""
    return TestClient(app, base_url="http://127.0.0.1:8080", client=("127.0.0.1", 50000), **kw)


def upload(client: TestClient, content: bytes = TASKS, name: str = "t.yaml") -> int:
    r = client.post(f"/api/inputs?filename={name}", content=content, headers=AUTH)
    assert r.status_code == 201, r.text
    return int(r.json()["input_id"])


def make_plan(rt: Runtime, client: TestClient) -> int:
    """A planned input's plan, ready for build (auto_build off), without workers."""
    from planfleet.workers import planning

    rt.store.settings.update(auto_build=False)
    input_id = upload(client)
    planning.plan_input(rt, input_id, "job-1")
    (p,) = [p for p in rt.store.plans.list() if p.pending_input_id == input_id]
    return p.id


# -- health ---------------------------------------------------------------------------------

def test_health_and_readiness(client: TestClient, rt: Runtime) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"postgres": "ok", "redis": "ok"}


def test_readyz_says_which_service_is_down(database_url: str) -> None:
    rt = open_runtime(Config(database_url=database_url, redis_url="redis://127.0.0.1:1/0"))
    try:
        with local(create_app(rt, dashboard=False)) as c:
            r = c.get("/readyz")
    finally:
        rt.close()
    assert r.status_code == 503
    # open to anyone: up or down, never the reason (addresses, versions)
    assert r.json() == {"postgres": "ok", "redis": "down"}


# -- auth -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("post", "/api/pending-inputs/1/enqueue-plan"), ("post", "/api/inputs/1/replan"),
    ("post", "/api/inputs?filename=x.yaml"), ("post", "/api/plans/1/enqueue-build"),
    ("post", "/api/plans/1/cancel"), ("post", "/api/plans/1/retry"), ("put", "/api/settings")])
def test_mutations_need_the_token(anon: TestClient, method: str, path: str) -> None:
    r = anon.request(method.upper(), path, json={})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = anon.request(method.upper(), path, json={}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403 and r.json()["detail"] == "wrong API token"


READS = ["/api/pending-inputs", "/api/pending-inputs/1", "/api/pending-inputs/1/content",
         "/api/plans", "/api/plans/1", "/api/plans/1/steps/1/log", "/api/settings",
         "/api/solvers",
         "/api/queues", "/api/events", "/metrics", "/", "/plans/1", "/inputs/1", "/events",
         "/docs", "/openapi.json", "/rq/", "/rq/0/data/queues.json"]


@pytest.mark.parametrize("path", READS)
def test_with_a_token_every_read_needs_it(anon: TestClient, client: TestClient,
                                          path: str) -> None:
    # Given a fleet with a token and an input in it
    upload(client)
    # When someone without the token reads, Then nothing but 401 (JSON for a program)
    r = anon.get(path, headers={"Accept": "application/json"})
    assert r.status_code == 401, (path, r.text)
    assert set(r.json()) == {"detail"} and r.headers["www-authenticate"] == "Bearer"
    # and a browser is sent to the sign-in page, coming back here afterwards
    r = anon.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2F")
    # With the token it gets through (an id may be unknown; never 401/403)
    assert client.get(path).status_code not in (401, 403), path


def test_planning_needs_the_token(anon: TestClient, client: TestClient) -> None:
    assert anon.post("/api/plan", content=TASKS).status_code == 401
    assert client.post("/api/plan", content=TASKS).status_code == 200


def test_only_the_probes_stay_open_and_say_only_up_or_down(anon: TestClient) -> None:
    assert anon.get("/healthz").json() == {"status": "ok"}
    assert anon.get("/readyz").json() == {"postgres": "ok", "redis": "ok"}
    assert anon.get("/static/app.js").status_code == 200
    assert anon.get("/login").status_code == 200


def test_metrics_take_their_own_token(database_url: str, redis_url: str) -> None:
    rt = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token=TOKEN,
                             metrics_token="prom"))
    try:
        with TestClient(create_app(rt, dashboard=False)) as c:
            assert c.get("/metrics").status_code == 401
            ok = c.get("/metrics", headers={"Authorization": "Bearer prom"})
            assert ok.status_code == 200 and "planfleet_" in ok.text
            assert c.get("/metrics", headers=AUTH).status_code == 200
            # the metrics token opens nothing else
            assert c.get("/api/settings",
                         headers={"Authorization": "Bearer prom"}).status_code == 403
    finally:
        rt.close()


def test_the_browser_signs_in_with_an_httponly_strict_cookie(anon: TestClient) -> None:
    # a wrong token: the form again, no cookie
    r = anon.post("/login", data={"token": "nope", "next": "/events"}, follow_redirects=False)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = anon.post("/login", data={"token": TOKEN, "next": "/events"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/events"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    # the cookie opens reads and same-origin mutations
    assert anon.get("/api/settings").status_code == 200
    r = anon.put("/api/settings", json={"auto_plan": False},
                 headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200
    # never an open redirect after signing in
    r = anon.post("/login", data={"token": TOKEN, "next": "//evil.example/x"},
                  follow_redirects=False)
    assert r.headers["location"] == "/"
    # signing out ends it
    anon.post("/logout", follow_redirects=False)
    assert anon.get("/api/settings").status_code == 401


def test_cookie_mutations_from_another_site_are_refused(anon: TestClient) -> None:
    anon.post("/login", data={"token": TOKEN}, follow_redirects=False)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"},
                    {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.testserver"}):
        r = anon.put("/api/settings", json={"auto_plan": False}, headers=headers)
        assert r.status_code == 403 and r.json()["detail"] == "cross-site request refused"
        # rq-dashboard's requeue and compact too
        assert anon.post("/rq/requeue/failed", headers=headers).status_code == 403
        assert anon.post("/rq/queue/plan_queue/compact", headers=headers).status_code == 403
    # rq-dashboard's requeue-on-GET is closed altogether
    assert anon.get("/rq/requeue/plan_queue").status_code == 405


def test_without_a_token_only_the_local_machine_and_local_names_are_served(
        database_url: str, redis_url: str) -> None:
    rt = open_runtime(Config(database_url=database_url, redis_url=redis_url))
    try:
        app = create_app(rt, dashboard=False)
        with local(app) as c:
            assert c.get("/api/settings").status_code == 200
            assert c.put("/api/settings", json={"auto_plan": False}).status_code == 200
            # DNS rebinding: a page of evil.example resolving to 127.0.0.1
            r = c.get("/api/settings", headers={"Host": "evil.example:8080"})
            assert r.status_code == 403 and "host 'evil.example' refused" in r.json()["detail"]
            # another site's page posting to the local fleet
            r = c.put("/api/settings", json={"auto_plan": True},
                      headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
            assert r.status_code == 403
        with TestClient(app, client=("192.0.2.7", 40000), base_url="http://127.0.0.1") as c:
            assert c.get("/api/settings").status_code == 403
        assert rt.store.settings.get().auto_plan is False
    finally:
        rt.close()


def test_every_answer_forbids_inline_script_and_framing(client: TestClient) -> None:
    for path in ("/", "/events", "/docs", "/login", "/api/settings", "/rq/", "/healthz",
                 "/static/app.js", "/nowhere"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, path
        script_src = csp.split("script-src", 1)[1].split(";", 1)[0]
        assert "'unsafe-inline'" not in script_src, path
        assert r.headers["x-frame-options"] == "DENY", path
        assert r.headers["x-content-type-options"] == "nosniff", path
    # the pages themselves carry no inline script or handler
    import re

    for path in ("/", "/events", "/docs", "/login"):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path


def test_docs_work_offline(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "cdn" not in html.lower() and "//" not in html.replace("http://", "")
    for asset in ("/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css",
                  "/static/docs.js"):
        r = client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset


def test_rq_dashboard_runs_only_its_own_inline_script(client: TestClient, rt: Runtime) -> None:
    from rq.registry import FailedJobRegistry
    from rq.results import Result

    # a failed job whose texts carry markup: they reach the page escaped
    job = rt.queues.build.enqueue("planfleet.workers.jobs.build_plan", 1,
                                  description="<img src=x onerror=alert(1)>")
    rt.queues.build.remove(job)
    FailedJobRegistry(queue=rt.queues.build).add(job, exc_string="<script>alert(2)</script>")
    Result.create_failure(job, 600, exc_string="<script>alert(2)</script>")
    data = client.get(f"/rq/0/data/job/{job.id}.json").json()
    assert data["description"] == "&lt;img src=x onerror=alert(1)&gt;"
    assert data["exc_info"] == "&lt;script&gt;alert(2)&lt;/script&gt;"
    listed = client.get("/rq/0/data/jobs/build_queue/failed/8/asc/1.json").text
    assert "<img" not in listed and "&lt;img" in listed
    # and only the page's own inline script may run
    html = client.get("/rq/").text
    csp = client.get("/rq/").headers["content-security-policy"]
    from planfleet.api import security

    hashes = security.script_hashes(html.encode())
    assert hashes and all(h in csp for h in hashes)
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]


# -- inputs ---------------------------------------------------------------------------------

def test_upload_records_and_enqueues_like_a_dropped_file(client: TestClient,
                                                         rt: Runtime) -> None:
    input_id = upload(client)
    got = rt.store.inputs.get(input_id)
    assert got.status is models.InputStatus.QUEUED and got.filename == "t.yaml"
    assert [j.args for j in rt.queues.plan.get_jobs()] == [[input_id]]
    assert got.source == "upload:t.yaml"
    # the same bytes again under the same name: the source's latest version, nothing new
    r = client.post("/api/inputs?filename=t.yaml", content=TASKS, headers=AUTH)
    assert r.json() == {"input_id": input_id, "filename": "t.yaml", "outcome": "duplicate",
                        "source": "upload:t.yaml"}
    assert rt.queues.plan.count == 1
    # ... under another name: the first version of that name's source
    r = client.post("/api/inputs?filename=other.yaml", content=TASKS, headers=AUTH)
    assert r.json()["outcome"] == "recorded" and r.json()["source"] == "upload:other.yaml"
    # a declared source wins over the name
    r = client.post("/api/inputs?filename=third.yaml", content=b"source: sam\n" + TASKS,
                    headers=AUTH)
    assert r.json()["source"] == "key:sam"
    assert client.get(f"/api/pending-inputs/{r.json()['input_id']}").json()["source"] == (
        "key:sam")


def test_upload_with_auto_plan_off_waits_and_generate_plan_queues_it(
        client: TestClient, rt: Runtime) -> None:
    rt.store.settings.update(auto_plan=False)
    input_id = upload(client)
    assert rt.store.inputs.get(input_id).status is models.InputStatus.PENDING
    r = client.post(f"/api/pending-inputs/{input_id}/enqueue-plan", headers=AUTH)
    assert r.status_code == 200 and r.json()["status"] == "queued"
    assert rt.queues.plan.count == 1
    r = client.post(f"/api/pending-inputs/{input_id}/enqueue-plan", headers=AUTH)
    assert r.status_code == 409 and r.json()["detail"] == f"input {input_id} is queued, not pending"
    assert rt.queues.plan.count == 1


def test_upload_rejects_bad_names_and_huge_bodies(client: TestClient) -> None:
    assert client.post("/api/inputs?filename=a/b.yaml", content=TASKS,
                       headers=AUTH).status_code == 422
    assert client.post("/api/inputs", content=TASKS, headers=AUTH).status_code == 422
    big = b"#" * (16 * 1024 * 1024 + 1)
    assert client.post("/api/inputs?filename=big.yaml", content=big,
                       headers=AUTH).status_code == 413


def test_input_list_filters_and_pages(client: TestClient, rt: Runtime) -> None:
    ids = [upload(client, TASKS + f"\n# {i}".encode(), f"f{i}.yaml") for i in range(5)]
    page = client.get("/api/pending-inputs?limit=2&offset=1").json()
    assert [i["id"] for i in page["items"]] == [ids[3], ids[2]] and page["total"] == 5
    assert client.get("/api/pending-inputs?status=queued").json()["total"] == 5
    assert client.get("/api/pending-inputs?status=failed").json()["items"] == []
    assert client.get("/api/pending-inputs?status=bogus").status_code == 422
    assert client.get("/api/pending-inputs?limit=0").status_code == 422


def test_input_detail_shows_the_error_and_problems_and_the_bytes(
        client: TestClient, rt: Runtime) -> None:
    from planfleet.workers import planning

    bad = b"tasks: [{id: A, depends_on: [B]}, {id: B, depends_on: [A]}, {id: C, depends_on: [Z]}]"
    input_id = upload(client, bad, "bad.yaml")
    planning.plan_input(rt, input_id, "job-1")
    d = client.get(f"/api/pending-inputs/{input_id}").json()
    assert d["status"] == "failed" and "dependency cycle" in d["error"]
    assert {p["code"] for p in d["problems"]} == {"cycle", "unknown_dependency"}
    assert [e["kind"] for e in d["events"]][:1] == ["plan_failed"]
    r = client.get(f"/api/pending-inputs/{input_id}/content")
    assert r.content == bad and 'filename="bad.yaml"' in r.headers["content-disposition"]
    # a failed input can be planned again (and fails again the same way)
    assert client.post(f"/api/inputs/{input_id}/replan", headers=AUTH).status_code == 200
    assert client.post(f"/api/inputs/{input_id}/replan", headers=AUTH).status_code == 409


def test_unknown_ids_are_404(client: TestClient) -> None:
    for method, path in [("GET", "/api/pending-inputs/999"),
                         ("GET", "/api/pending-inputs/999/content"),
                         ("POST", "/api/pending-inputs/999/enqueue-plan"),
                         ("POST", "/api/inputs/999/replan"), ("GET", "/api/plans/999"),
                         ("POST", "/api/plans/999/enqueue-build"),
                         ("POST", "/api/plans/999/cancel"), ("POST", "/api/plans/999/retry"),
                         ("GET", "/api/plans/99999999999999999999"),
                         ("GET", "/api/plans/-1"), ("GET", "/plans/999"), ("GET", "/inputs/9")]:
        r = client.request(method, path, headers=AUTH)
        assert r.status_code in (404, 422), (path, r.status_code, r.text)
        if r.status_code == 404:
            assert "does not exist" in r.json()["detail"] or "no record" in r.json()["detail"]


# -- plans ----------------------------------------------------------------------------------

def test_plan_lifecycle_through_the_api(client: TestClient, rt: Runtime) -> None:
    plan_id = make_plan(rt, client)
    page = client.get("/api/plans?status=ready_for_build").json()
    assert [p["id"] for p in page["items"]] == [plan_id]
    d = client.get(f"/api/plans/{plan_id}").json()
    assert d["plan"]["critical_path"] == ["A", "B"] and d["steps"] == []
    r = client.post(f"/api/plans/{plan_id}/enqueue-build", headers=AUTH)
    assert r.status_code == 200 and rt.queues.build.count == 1
    r = client.post(f"/api/plans/{plan_id}/enqueue-build", headers=AUTH)
    assert r.status_code == 409 and "queued, not ready_for_build" in r.json()["detail"]
    r = client.post(f"/api/plans/{plan_id}/retry", headers=AUTH)
    assert r.status_code == 409 and "not failed" in r.json()["detail"]
    r = client.post(f"/api/plans/{plan_id}/cancel", json={"reason": "changed my mind"},
                    headers=AUTH)
    assert r.status_code == 200 and "changed my mind" in r.json()["message"]
    assert rt.store.plans.get(plan_id).error == "changed my mind"
    r = client.post(f"/api/plans/{plan_id}/cancel", headers=AUTH)
    assert r.status_code == 409 and "nothing to cancel" in r.json()["detail"]
    assert client.post(f"/api/plans/{plan_id}/cancel", json={"reason": ""},
                       headers=AUTH).status_code == 422


def test_plan_detail_has_steps_attempts_and_links(client: TestClient, rt: Runtime) -> None:
    plan_id = make_plan(rt, client)
    rt.store.plans.queue(plan_id)
    assert rt.store.plans.claim(plan_id, "w", 30)
    rt.store.steps.create(plan_id, [{"task_id": t, "script": "f/x", "solver": None, "args": {}}
                                    for t in "AB"])
    a = rt.store.steps.latest(plan_id)["A"]
    rt.store.steps.dispatch(a.id, "11111111-2222-3333-4444-555555555555")
    rt.store.steps.finish(a.id, models.StepStatus.FAILED, error="boom",
                          result={"link": "http://wm/run/1"}, retry_in=0)
    d = client.get(f"/api/plans/{plan_id}").json()
    assert [(s["task_id"], s["attempt"], s["status"]) for s in d["history"]][0] == (
        "A", 1, "failed")
    first = d["history"][0]
    assert first["link"] == "http://wm/run/1" and first["error"] == "boom"
    assert first["job_id"] == "11111111-2222-3333-4444-555555555555"
    assert {(s["task_id"], s["attempt"]) for s in d["steps"]} == {("A", 2), ("B", 1)}
    r = client.get(f"/api/plans/{plan_id}/steps/{a.id}/log")
    assert r.status_code == 404 and "no log for step" in r.json()["detail"]
    b = rt.store.steps.latest(plan_id)["B"]
    r = client.get(f"/api/plans/{plan_id}/steps/{b.id}/log")
    assert r.status_code == 404 and "has not been dispatched" in r.json()["detail"]
    assert client.get(f"/api/plans/{plan_id}/steps/999/log").status_code == 404


def test_plan_endpoint_plans_and_stores_nothing(client: TestClient, rt: Runtime) -> None:
    r = client.post("/api/plan?max_parallel=1&filename=t.yaml", content=TASKS)
    assert r.status_code == 200
    p = r.json()
    assert p["makespan"] == 15 and p["batches"] == [["A"], ["B"]]
    assert rt.store.inputs.list() == [] and rt.store.plans.list() == []
    cycle = b"tasks: [{id: A, depends_on: [B]}, {id: B, depends_on: [A]}]"
    r = client.post("/api/plan", content=cycle)
    assert r.status_code == 422 and r.json()["problems"][0]["code"] == "cycle"
    r = client.post("/api/plan", content=b"\xff\xfe\x00garbage")
    assert r.status_code == 422 and r.json()["problems"]
    r = client.post("/api/plan", content=b"")
    assert r.status_code == 422 and r.json()["problems"][0]["code"] == "empty"


# -- settings, queues, events, metrics -----------------------------------------------------

def test_settings_read_and_change(client: TestClient, rt: Runtime, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    r = client.put("/api/settings", json={"auto_plan": False, "watch_dir": str(tmp_path / "in"),
                                          "max_parallel": 4}, headers=AUTH)
    assert r.status_code == 200
    assert client.get("/api/settings").json() | {"updated_at": None} == {
        "auto_plan": False, "auto_build": True, "watch_dir": str(tmp_path / "in"),
        "max_parallel": 4, "max_running": 1000, "updated_at": None}
    client.put("/api/settings", json={"watch_dir": ""}, headers=AUTH)
    assert rt.store.settings.get().watch_dir is None
    for bad in ({"max_parallel": 0}, {"auto_plan": "maybe"}, {"nope": 1},
                {"watch_dir": "a\x00b"}):
        r = client.put("/api/settings", json=bad, headers=AUTH)
        assert r.status_code == 422, (bad, r.text)


def test_queues_report_depth_and_workers(client: TestClient, rt: Runtime) -> None:
    rt.queues.enqueue_plans([1, 2])
    worker = rq.Worker([rt.queues.plan], connection=rt.queues.connection, name="w1")
    worker.register_birth()
    try:
        qs = {q["name"]: q for q in client.get("/api/queues").json()["queues"]}
    finally:
        worker.register_death()
    assert qs["plan_queue"]["depth"] == 2 and qs["plan_queue"]["workers"] == 1
    assert qs["plan_queue"]["mode"] == "auto" and qs["build_queue"]["depth"] == 0


def test_events_filter_and_page(client: TestClient, rt: Runtime) -> None:
    for i in range(5):
        rt.store.events.add("note", f"n{i}", plan_id=7 if i % 2 else None)
    page = client.get("/api/events?kind=note&limit=2").json()
    assert [e["message"] for e in page["items"]] == ["n4", "n3"]
    older = client.get(f"/api/events?kind=note&limit=2&before={page['next_before']}").json()
    assert [e["message"] for e in older["items"]] == ["n2", "n1"]
    assert [e["message"] for e in client.get("/api/events?plan_id=7").json()["items"]] == [
        "n3", "n1"]
    assert client.get("/api/events?kind=note&limit=10").json()["next_before"] is None


def test_metrics_count_from_postgres_and_redis(client: TestClient, rt: Runtime) -> None:
    from planfleet.workers import planning

    input_id = upload(client, b"tasks: [{id: A, depends_on: [A]}]", "cycle.yaml")
    planning.plan_input(rt, input_id, "job-1")
    rt.store.circuits.failure("f/x", "boom", threshold=1)
    text = client.get("/metrics").text
    assert 'planfleet_inputs{status="failed"} 1.0' in text
    assert "planfleet_dag_cycles_detected_total 1.0" in text
    assert 'planfleet_jobs_total{status="failed",type="plan"} 1.0' in text
    assert 'planfleet_queue_depth{queue="plan_queue"} 1.0' in text  # the upload's job
    assert 'planfleet_circuit_state{script="f/x",state="open"} 1.0' in text
    assert 'planfleet_job_duration_seconds_count{type="step"} 0.0' in text


def test_solvers_and_max_running_through_the_api_and_the_metrics(
        client: TestClient, anon: TestClient, rt: Runtime) -> None:
    assert anon.put("/api/solvers/angrav", json={"capacity": 3}).status_code == 401
    assert anon.get("/api/solvers").status_code == 401
    r = client.put("/api/solvers/angrav", json={"capacity": 3, "script": "f/a/solve"},
                   headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() | {"updated_at": None} == {
        "name": "angrav", "capacity": 3, "script": "f/a/solve", "busy": 0, "waiting": 0,
        "updated_at": None}
    assert client.put("/api/solvers/angrav", json={"capacity": -1},
                      headers=AUTH).status_code == 422
    assert [x["name"] for x in client.get("/api/solvers").json()] == ["angrav"]
    text = client.get("/metrics").text
    assert 'planfleet_solver_capacity{solver="angrav"} 3.0' in text
    assert 'planfleet_solver_busy{solver="angrav"} 0.0' in text
    assert 'planfleet_tasks_waiting{solver="angrav"} 0.0' in text
    assert "planfleet_plans_building 0.0" in text
    assert client.delete("/api/solvers/angrav", headers=AUTH).status_code == 200
    assert client.delete("/api/solvers/angrav", headers=AUTH).status_code == 404
    r = client.put("/api/settings", json={"max_running": 7}, headers=AUTH)
    assert r.status_code == 200 and r.json()["max_running"] == 7
    assert rt.store.settings.get().max_running == 7


def test_the_fleet_view_and_a_plan_say_what_waits_for_which_solver(
        client: TestClient, rt: Runtime) -> None:
    plan_id = make_plan(rt, client)
    rt.store.fleet.set_solver("angrav", 0)
    rt.store.plans.queue(plan_id)
    assert rt.store.plans.start_turns(plan_id, 4, {})
    rt.store.steps.create(plan_id, [{"task_id": "A", "script": "f/x", "solver": "angrav",
                                     "args": {}}])
    rt.store.steps.mark_ready([rt.store.steps.latest(plan_id)["A"].id])
    page = client.get("/fleet").text
    assert "angrav" in page and f'<a href="/plans/{plan_id}">{plan_id}</a>' in page
    # each plan named by the file it was made from
    assert f'<a href="/plans/{plan_id}">{plan_id}</a> <span class="plan-name">(t.yaml)</span>' in page
    assert rt.store.plans.labels([plan_id, 10**9]) == {plan_id: models.PlanLabel(
        id=plan_id, project=None, input_id=rt.store.plans.get(plan_id).pending_input_id,
        filename="t.yaml")}
    detail = client.get(f"/api/plans/{plan_id}").json()
    assert detail["waiting_for_a_slot"] == {"A": "waiting for a free angrav slot: 0 of 0 busy"}
    assert "waiting for a free angrav slot" in client.get(f"/plans/{plan_id}").text
    assert client.get("/api/solvers").json()[0]["waiting"] == 1


def test_openapi_schema_lists_the_seed_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/pending-inputs", "/api/pending-inputs/{input_id}/enqueue-plan",
                 "/api/plans", "/api/plans/{plan_id}/enqueue-build", "/api/settings"):
        assert path in paths
    assert "put" in paths["/api/settings"] and "get" in paths["/api/settings"]




def test_pause_resume_and_decide_through_the_api(client: TestClient, rt: Runtime) -> None:
    plan_id = make_plan(rt, client)
    r = client.post(f"/api/plans/{plan_id}/pause", headers=AUTH)
    assert r.status_code == 409 and "ready_for_build" in r.json()["detail"]
    rt.store.plans.queue(plan_id)
    assert client.post(f"/api/plans/{plan_id}/pause", headers=AUTH).status_code == 200
    assert rt.store.plans.get(plan_id).status is models.PlanStatus.PAUSED
    assert client.post(f"/api/plans/{plan_id}/resume", headers=AUTH).status_code == 200
    assert rt.store.plans.get(plan_id).status is models.PlanStatus.QUEUED
    assert rt.queues.build.count == 1
    # a step waiting for a person
    assert rt.store.plans.claim(plan_id, "w", 30)
    rt.store.steps.create(plan_id, [{"task_id": t, "script": "f/x", "solver": None, "args": {}}
                                    for t in "AB"])
    a = rt.store.steps.latest(plan_id)["A"]
    rt.store.steps.dispatch(a.id, "21111111-2222-3333-4444-555555555555")
    rt.store.steps.finish(a.id, models.StepStatus.BLOCKED, error="which db?",
                          error_type="specification", question="Which database?")
    assert rt.store.plans.block(plan_id)
    d = client.get(f"/api/plans/{plan_id}").json()
    assert d["waiting_for_a_person"] == {"B": "A"}
    blocked = next(s for s in d["steps"] if s["task_id"] == "A")
    assert blocked["status"] == "blocked" and blocked["question"] == "Which database?"
    url = f"/api/plans/{plan_id}/steps/A/decide"
    assert client.post(url, json={"decision": "maybe"}, headers=AUTH).status_code == 422
    r = client.post(url, json={"decision": "answer"}, headers=AUTH)
    assert r.status_code == 409 and "needs its text" in r.json()["detail"]
    r = client.post(url, json={"decision": "answer", "note": "Postgres"}, headers=AUTH)
    assert r.status_code == 200, r.text
    latest = rt.store.steps.latest(plan_id)["A"]
    assert latest.attempt == 2 and latest.args["clarification"] == {
        "question": "Which database?", "answer": "Postgres"}
    assert rt.store.plans.get(plan_id).status is models.PlanStatus.QUEUED  # building again
    r = client.post(url, json={"decision": "skip"}, headers=AUTH)
    assert r.status_code == 409 and "not blocked" in r.json()["detail"]
    r = client.post(f"/api/plans/{plan_id}/steps/ZZ/decide", json={"decision": "skip"},
                    headers=AUTH)
    assert r.status_code == 404


# -- hardening: downloads and errors ------------------------------------------------------

def test_content_downloads_under_any_file_name(client: TestClient) -> None:
    name = "été-数据.yaml"
    input_id = upload(client, name=name)
    r = client.get(f"/api/pending-inputs/{input_id}/content")
    assert r.status_code == 200 and r.content == TASKS
    assert "filename*=UTF-8''%C3%A9t%C3%A9-%E6%95%B0%E6%8D%AE.yaml" in r.headers[
        "content-disposition"]


def test_errors_show_no_absolute_server_paths(client: TestClient, rt: Runtime,
                                              database_url: str) -> None:
    import psycopg

    plan_id = make_plan(rt, client)
    secret = "/opt/secret-install/planfleet/deploy/windmill/f/x/job.py"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE plans SET error = %s WHERE id = %s",
                     (f"[Errno 36] File name too long: '{secret}'", plan_id))
    shown = client.get(f"/api/plans/{plan_id}").json()["error"]
    assert shown == "[Errno 36] File name too long: '…/job.py'"
    assert "secret-install" not in client.get(f"/plans/{plan_id}").text
    assert "secret-install" not in client.get("/api/plans").text


# -- hardening: the planner endpoint --------------------------------------------------------

def test_plan_bodies_over_the_watchers_limit_are_refused(database_url: str,
                                                         redis_url: str) -> None:
    rt = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token=TOKEN,
                             max_file_bytes=1000))
    try:
        with TestClient(create_app(rt, dashboard=False), headers=AUTH) as c:
            assert c.post("/api/plan", content=TASKS).status_code == 200
            r = c.post("/api/plan", content=b"#" * 1001)
            assert r.status_code == 413 and "over 1000 bytes" in r.json()["detail"]
            # a chunked body (no Content-Length) is counted as it arrives
            r = c.post("/api/plan", content=iter([b"#" * 600, b"#" * 600]))
            assert r.status_code == 413
            assert c.post("/api/inputs?filename=x.yaml", content=b"#" * 1001).status_code == 413
    finally:
        rt.close()


def test_planning_beyond_capacity_answers_429(database_url: str, redis_url: str) -> None:
    rt = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token=TOKEN,
                             plan_concurrency=1))
    try:
        app = create_app(rt, dashboard=False)
        with TestClient(app, headers=AUTH) as c:
            # Given one planning request in progress (holding the only slot)
            assert app.state.planning.acquire(blocking=False)
            # When another comes, Then 429 at once, and nothing of its body is kept
            r = c.post("/api/plan", content=TASKS)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            app.state.planning.release()
            r = c.post("/api/plan", content=TASKS)
            assert r.status_code == 200 and r.json()["makespan"] == 15
            # the slot is given back after a failure too
            assert c.post("/api/plan", content=b"tasks: [{id: A, depends_on: [A]}]"
                          ).status_code == 422
            assert c.post("/api/plan", content=TASKS).status_code == 200
    finally:
        rt.close()
