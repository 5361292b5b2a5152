"""The REST API on real Postgres and Redis: every endpoint and its error paths."""

from __future__ import annotations

from collections.abc import Iterator

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
def rt(database_url: str, redis_url: str) -> Iterator[Runtime]:
    r = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token=TOKEN))
    yield r
    r.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), raise_server_exceptions=False) as c:
        yield c


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
        with TestClient(create_app(rt, dashboard=False)) as c:
            r = c.get("/readyz")
    finally:
        rt.close()
    assert r.status_code == 503
    assert r.json()["postgres"] == "ok" and "ConnectionError" in r.json()["redis"]


# -- auth -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("post", "/api/pending-inputs/1/enqueue-plan"), ("post", "/api/inputs/1/replan"),
    ("post", "/api/inputs?filename=x.yaml"), ("post", "/api/plans/1/enqueue-build"),
    ("post", "/api/plans/1/cancel"), ("post", "/api/plans/1/retry"), ("put", "/api/settings")])
def test_mutations_need_the_token(client: TestClient, method: str, path: str) -> None:
    r = client.request(method.upper(), path, json={})
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.request(method.upper(), path, json={}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403 and r.json()["detail"] == "wrong API token"


def test_reads_and_planning_need_no_token(client: TestClient) -> None:
    for path in ("/api/pending-inputs", "/api/plans", "/api/settings", "/api/queues",
                 "/api/events", "/metrics", "/"):
        assert client.get(path).status_code == 200, path
    assert client.post("/api/plan", content=TASKS).status_code == 200


def test_without_a_token_configured_mutations_are_open(database_url: str,
                                                       redis_url: str) -> None:
    rt = open_runtime(Config(database_url=database_url, redis_url=redis_url))
    try:
        with TestClient(create_app(rt, dashboard=False)) as c:
            assert c.put("/api/settings", json={"auto_plan": False}).status_code == 200
    finally:
        rt.close()


# -- inputs ---------------------------------------------------------------------------------

def test_upload_records_and_enqueues_like_a_dropped_file(client: TestClient,
                                                         rt: Runtime) -> None:
    input_id = upload(client)
    got = rt.store.inputs.get(input_id)
    assert got.status is models.InputStatus.QUEUED and got.filename == "t.yaml"
    assert [j.args for j in rt.queues.plan.get_jobs()] == [[input_id]]
    # the same bytes again: the earlier input, nothing new
    r = client.post("/api/inputs?filename=other.yaml", content=TASKS, headers=AUTH)
    assert r.json() == {"input_id": input_id, "filename": "other.yaml", "outcome": "duplicate"}
    assert rt.queues.plan.count == 1


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

def test_settings_read_and_change(client: TestClient, rt: Runtime) -> None:
    r = client.put("/api/settings", json={"auto_plan": False, "watch_dir": "/srv/in",
                                          "max_parallel": 4}, headers=AUTH)
    assert r.status_code == 200
    assert client.get("/api/settings").json() | {"updated_at": None} == {
        "auto_plan": False, "auto_build": True, "watch_dir": "/srv/in", "max_parallel": 4,
        "max_running": 1000, "updated_at": None}
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
        client: TestClient, rt: Runtime) -> None:
    assert client.put("/api/solvers/angrav", json={"capacity": 3}).status_code == 401
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
