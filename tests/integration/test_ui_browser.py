"""The web UI in a real browser (Debian's Chromium driven by Playwright) against the real API
server, real workers, Postgres and Redis. Screenshots are kept under test-artifacts/."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from planfleet import models
from planfleet.api import create_app
from planfleet.config import Config
from planfleet.runtime import open_runtime
from tests.conftest import IN_CI, wait_for
from tests.integration.conftest import Fleet

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("PLANFLEET_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "test-artifacts"))
TOKEN = "browser-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(fleet: Fleet) -> Iterator[str]:
    rt = open_runtime(Config(database_url=fleet.config.database_url,
                             redis_url=fleet.config.redis_url, api_token=TOKEN,
                             state_dir=fleet.config.state_dir))
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port,
                                        log_config=None, access_log=False))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for(lambda: srv.started, timeout=20)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    rt.close()


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is required in CI (scripts/test.sh installs it)")
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        browser.close()
        assert not errors, f"script errors in the page: {errors}"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_dashboard_generate_plan_enqueue_build_and_the_gantt_chart(
        fleet: Fleet, server: str, page: Any) -> None:
    from playwright.sync_api import expect

    # Given workers, manual mode at both hops, and a recorded task file
    fleet.workers()
    fleet.store.settings.update(auto_plan=False, auto_build=False)
    input_id = fleet.submit(fleet.task_file([
        {"id": "A", "estimate": 20, "args": {"sleep": 0.3}},
        {"id": "B", "estimate": 10, "depends_on": ["A"], "args": {"sleep": 0.3}},
        {"id": "C", "estimate": 15, "depends_on": ["A"], "args": {"sleep": 0.3}}]),
        queue=False)
    # When the dashboard opens (the token arrives in the link, as `planfleet up` prints it)
    page.goto(f"{server}/#token={TOKEN}")
    expect(page.locator("#queue-plan_queue")).to_contain_text("auto_plan: manual")
    row = page.locator(f'tr[data-input="{input_id}"]')
    expect(row).to_have_attribute("data-status", "pending")
    assert "token=" not in page.url  # the token left the address bar
    shot(page, "1-dashboard")

    # toggling auto_plan changes the setting, and back
    page.locator("#toggle-auto_plan").check()
    wait_for(lambda: fleet.store.settings.get().auto_plan, timeout=10)
    expect(page.locator("#queue-plan_queue")).to_contain_text("auto_plan: auto")
    page.locator("#toggle-auto_plan").uncheck()
    wait_for(lambda: not fleet.store.settings.get().auto_plan, timeout=10)

    # "Generate plan": the input is planned, its plan waits for a build
    row.get_by_role("button", name="Generate plan").click()
    expect(row).to_have_attribute("data-status", "planned", timeout=30_000)
    (plan,) = fleet.store.plans.list()
    plan_row = page.locator(f'tr[data-plan="{plan.id}"]')
    expect(plan_row).to_have_attribute("data-status", "ready_for_build", timeout=10_000)
    shot(page, "2-planned")

    # "Enqueue build", from the keyboard: the plan is built, live, without a reload
    button = plan_row.get_by_role("button", name="Enqueue build")
    button.focus()
    page.keyboard.press("Enter")
    expect(plan_row).to_have_attribute("data-status", "built", timeout=60_000)
    assert fleet.store.plans.get(plan.id).status is models.PlanStatus.BUILT
    shot(page, "3-built")

    # the plan's page: a Gantt chart coloured by state, the dependency graph, the steps
    plan_row.get_by_role("link", name=str(plan.id)).first.click()
    expect(page.locator("h1")).to_contain_text(f"Plan {plan.id}")
    bars = page.locator("#gantt svg rect.bar")
    expect(bars).to_have_count(3)
    for task in "ABC":
        expect(page.locator(f'#gantt rect[data-task="{task}"]')).to_have_attribute(
            "data-state", "completed")
    expect(page.locator("#dag svg g.node")).to_have_count(3)
    expect(page.locator("#dag svg path.edge")).to_have_count(2)
    expect(page.locator("#steps tbody tr")).to_have_count(3)
    shot(page, "4-plan-gantt")
    # each step's output is one link away
    href = page.locator('#steps tr[data-task="A"]').get_by_role("link", name="log").get_attribute(
        "href")
    r = page.request.get(f"{server}{href}")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")


def test_a_failed_input_shows_its_error_where_it_is(fleet: Fleet, server: str,
                                                   page: Any) -> None:
    from playwright.sync_api import expect

    fleet.worker("plan_queue")
    input_id = fleet.submit(b"tasks: [{id: A, depends_on: [B]}, {id: B, depends_on: [A]}]",
                            "cycle.yaml")
    wait_for(lambda: fleet.store.inputs.get(input_id).status is models.InputStatus.FAILED,
             timeout=30)
    page.goto(f"{server}/#token={TOKEN}")
    row = page.locator(f'tr[data-input="{input_id}"]')
    expect(row).to_contain_text("dependency cycle: A -> B -> A")
    row.get_by_role("link", name=str(input_id)).click()
    expect(page.get_by_role("alert")).to_contain_text("dependency cycle")
    expect(page.get_by_role("link", name="download")).to_be_visible()
    shot(page, "5-failed-input")


def test_without_signing_in_nothing_shows_and_the_session_is_out_of_scripts_reach(
        fleet: Fleet, server: str, page: Any) -> None:
    from playwright.sync_api import expect

    fleet.store.settings.update(auto_plan=False)
    input_id = fleet.submit(fleet.task_file([{"id": "A"}]), queue=False)
    # Given no session: the dashboard is the sign-in form, nothing of the fleet on it
    page.goto(server)
    expect(page).to_have_url(f"{server}/login?next=%2F")
    expect(page.locator("main")).not_to_contain_text("input-")
    shot(page, "6-sign-in")
    # a wrong token is refused with the reason
    page.locator("#token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not this fleet's API token")
    # the right one opens the dashboard; no page script can read the session
    page.locator("#token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(f'tr[data-input="{input_id}"]')).to_have_attribute(
        "data-status", "pending")
    assert "planfleet_session" not in page.evaluate("document.cookie")
    assert page.evaluate("JSON.stringify(localStorage)") == "{}"
    # the rq-dashboard is one link away, and reads the fleet's queues
    fleet.queues.enqueue_plans([input_id])
    page.get_by_role("link", name="RQ dashboard").click()
    expect(page).to_have_url(f"{server}/rq/")
    expect(page.locator("body")).to_contain_text("plan_queue", timeout=10_000)
    shot(page, "6-rq-dashboard")
    # signing out: the next action is refused, the page goes back to the sign-in form
    page.goto(server)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{server}/login")
    r = page.request.post(f"{server}/api/pending-inputs/{input_id}/enqueue-plan")
    assert r.status == 401
    assert fleet.store.inputs.get(input_id).status is models.InputStatus.PENDING


def test_markup_in_a_failed_jobs_text_does_not_run_under_rq(fleet: Fleet, server: str,
                                                           page: Any) -> None:
    from playwright.sync_api import expect
    from rq.registry import FailedJobRegistry
    from rq.results import Result

    # Given a failed job whose exception text carries a script (as a task file's script name
    # made it in the build's error)
    payload = ('<img id="pwn" src="x" onerror="window.pwned=1;fetch(\'/api/settings\','
               '{method:\'PUT\',headers:{\'Content-Type\':\'application/json\'},'
               'body:\'{&quot;auto_build&quot;:false}\'})">')
    job = fleet.queues.build.enqueue("planfleet.workers.building.build_plan", 1,
                                     description=payload)
    fleet.queues.build.remove(job)
    error = f"OSError: [Errno 36] File name too long: {payload}"
    FailedJobRegistry(queue=fleet.queues.build).add(job, exc_string=error)
    Result.create_failure(job, 600, exc_string=error)
    assert fleet.store.settings.get().auto_build
    # When an operator opens that job under /rq/
    page.goto(f"{server}/#token={TOKEN}")
    expect(page.locator("#main")).to_contain_text("Plans")
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto(f"{server}/rq/0/view/job/{job.id}")
    # Then the job's texts show as text (escaped on their way to the page), no element made
    expect(page.locator("#job-data")).to_contain_text('<img id="pwn"', timeout=10_000)
    assert page.locator("#pwn").count() == 0
    # and markup that would get in all the same runs no handler: the CSP refuses it (and says so)
    page.evaluate("""() => document.body.insertAdjacentHTML('beforeend',
        '<img id="late" src="x" onerror="window.pwned = 1">')""")
    wait_for(lambda: any("inline event handler" in m for m in messages), timeout=10)
    assert page.evaluate("window.pwned") is None
    assert fleet.store.settings.get().auto_build
    shot(page, "8-rq-job-markup-inert")


def test_browser_is_debians(page: Any) -> None:
    assert shutil.which("chromium") == CHROMIUM


def test_a_blocked_step_is_answered_from_its_plan_page(fleet: Fleet, server: str,
                                                       page: Any) -> None:
    from playwright.sync_api import expect

    fleet.workers()
    input_id = fleet.submit(fleet.task_file([
        {"id": "A", "script": "f/test/lifecycle", "args": {"mode": "spec"}},
        {"id": "B", "depends_on": ["A"], "args": {"sleep": 0}}]))
    plan = wait_for(lambda: next((p for p in fleet.store.plans.list()
                                  if p.pending_input_id == input_id
                                  and p.status is models.PlanStatus.BLOCKED), None), timeout=60)
    assert isinstance(plan, models.PlanRecord)
    page.goto(f"{server}/plans/{plan.id}#token={TOKEN}")
    blocked = page.locator("#blocked")
    expect(blocked).to_contain_text("Which database should the migration target?")
    expect(page.locator("#main")).to_contain_text("Waiting for A, which waits for a person.")
    shot(page, "7-blocked")
    page.locator("#note-A").fill("Postgres 15")
    page.get_by_role("button", name="Answer").click()
    expect(page.locator("h1")).to_contain_text("built", timeout=60_000)
    assert fleet.executions(plan.id, "A")[1]["clarification"]["answer"] == "Postgres 15"


def test_the_api_docs_render_from_local_files_under_the_csp(server: str, page: Any) -> None:
    from playwright.sync_api import expect

    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server) else None)
    page.goto(f"{server}/#token={TOKEN}")
    expect(page.locator("#main")).to_contain_text("Plans")
    page.goto(f"{server}/docs")
    expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
    expect(page.locator("#swagger-ui")).to_contain_text("/api/settings")
    shot(page, "9-docs")
    assert outside == []
