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


#: a title that would be markup if a page inserted it as HTML
MARKUP_TITLE = '<img id="pwn-title" src="x" onerror="window.pwned=1">Ship it'
TASKS = [
    {"id": "A", "title": "Design the schema", "estimate": 20, "args": {"sleep": 0.3}},
    {"id": "B", "title": "Write migrations", "estimate": 10, "depends_on": ["A"],
     "args": {"sleep": 0.3}},
    {"id": "C", "title": "Load fixtures", "estimate": 15, "depends_on": ["A"],
     "args": {"sleep": 0.3}},
    {"id": "D", "title": "Seed the search index", "estimate": 25, "depends_on": ["B"],
     "args": {"sleep": 0.3}},
    {"id": "E", "title": MARKUP_TITLE, "estimate": 10, "depends_on": ["A", "D", "C"],
     "args": {"sleep": 0.3}},
]


def svg_geometry(page: Any, selector: str) -> dict[str, float]:
    """A chart's drawn width, its container's inner width and its labels' size on screen."""
    return dict(page.evaluate("""sel => {
        const svg = document.querySelector(sel + ' svg');
        const box = svg.parentElement;
        const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
        const label = svg.querySelector('text.label') || svg.querySelector('text.id');
        return {svg: svg.getBoundingClientRect().width, box: box.clientWidth,
                font: parseFloat(getComputedStyle(label).fontSize) * scale};
    }""", selector))


def test_dashboard_generate_plan_enqueue_build_and_the_gantt_chart(
        fleet: Fleet, server: str, page: Any) -> None:
    from playwright.sync_api import expect

    # Given workers, manual mode at both hops, and a recorded task file
    fleet.workers()
    fleet.store.settings.update(auto_plan=False, auto_build=False)
    input_id = fleet.submit(fleet.task_file([dict(t) for t in TASKS], project="Storefront"),
                            "storefront.yaml", queue=False)
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
    # a plan is named by its project and file, the file a link to its input
    expect(plan_row.locator("td.name")).to_contain_text("Storefront")
    expect(plan_row.get_by_role("link", name="storefront.yaml")).to_have_attribute(
        "href", f"/inputs/{input_id}")
    # a planned input offers no "Plan again" in the list (its own page does, with a question)
    expect(row.get_by_role("button")).to_have_count(0)
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
    expect(page.locator("h1")).to_contain_text(f"Plan {plan.id}: Storefront")
    expect(page.locator("#main")).to_contain_text("from storefront.yaml")
    bars = page.locator("#gantt svg rect.bar")
    expect(bars).to_have_count(5)
    for task in "ABCDE":
        expect(page.locator(f'#gantt rect.bar[data-task="{task}"]')).to_have_attribute(
            "data-state", "completed")
    # planned and actual bars, no "now" once the plan is built
    expect(page.locator("#gantt svg rect.actual")).to_have_count(5)
    expect(page.locator("#gantt line.now")).to_have_count(0)
    # titles beside ids: chart labels, graph nodes, the steps, the order's reasons
    expect(page.locator('#gantt g.row[data-task="B"] text.label')).to_have_text(
        "B Write migrations")
    expect(page.locator('#dag g.node[data-task="D"]')).to_contain_text("Seed the search index")
    expect(page.locator('#steps tr[data-task="A"]')).to_contain_text("A Design the schema")
    expect(page.locator(".explain")).to_contain_text("C Load fixtures")
    # a title with markup is text wherever it shows
    expect(page.locator('#steps tr[data-task="E"]')).to_contain_text(MARKUP_TITLE)
    expect(page.locator('#dag g.node[data-task="E"]')).to_contain_text('<img id="pwn-title"')
    assert page.locator("#pwn-title").count() == 0
    assert page.evaluate("window.pwned") is None
    # the Gantt chart fills its box, and its labels are 12 px or more
    geometry = svg_geometry(page, "#gantt")
    assert abs(geometry["svg"] - geometry["box"]) <= 1 and geometry["font"] >= 12, geometry
    # the graph: an arrowhead on every edge, the long edge E <- A past the tasks between
    expect(page.locator("#dag svg g.node")).to_have_count(5)
    edges = page.locator("#dag svg path.edge")
    expect(edges).to_have_count(6)
    expect(page.locator("#dag svg defs marker#dag-arrow")).to_have_count(1)
    assert edges.evaluate_all("ps => ps.every(p => p.getAttribute('marker-end') === "
                              "'url(#dag-arrow)')")
    assert svg_geometry(page, "#dag")["font"] >= 12
    expect(page.locator("#steps tbody tr")).to_have_count(5)
    shot(page, "4-plan-gantt")
    # each step's output is one link away
    href = page.locator('#steps tr[data-task="A"]').get_by_role("link", name="log").get_attribute(
        "href")
    r = page.request.get(f"{server}{href}")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")

    # "Plan again" asks first: cancelled, nothing is sent and nothing planned again
    replans: list[str] = []
    page.on("request", lambda r: replans.append(r.url) if "/replan" in r.url else None)
    page.goto(f"{server}/inputs/{input_id}")
    page.get_by_role("button", name="Plan again").click()
    dialog = page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Plan storefront.yaml again?")
    shot(page, "4-replan-question")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#toast")).to_contain_text("nothing done")
    assert replans == []
    assert fleet.store.inputs.get(input_id).status is models.InputStatus.PLANNED
    # said yes to, it plans the file again: a second plan
    page.get_by_role("button", name="Plan again").click()
    dialog.get_by_role("button", name="Plan again").click()
    expect(page.locator("#toast")).to_contain_text("queued for planning again")
    assert len(replans) == 1
    wait_for(lambda: len(fleet.store.plans.of_input(input_id)) == 2, timeout=30)


CYCLE = b"""project: Storefront
tasks:
  - id: A
    title: Design the schema
    depends_on: [B]
  - id: B
    title: Write migrations
    depends_on: [A]
  - id: C
    title: Load fixtures
"""


def test_a_failed_input_shows_its_problems_beside_its_lines(fleet: Fleet, server: str,
                                                           page: Any) -> None:
    from playwright.sync_api import expect

    fleet.worker("plan_queue")
    fleet.store.settings.update(auto_plan=False)
    waiting = fleet.submit(fleet.task_file([{"id": "A"}]), "later.yaml", queue=False)
    input_id = fleet.submit(CYCLE, "cycle.yaml")
    wait_for(lambda: fleet.store.inputs.get(input_id).status is models.InputStatus.FAILED,
             timeout=30)
    page.goto(f"{server}/#token={TOKEN}")
    row = page.locator(f'tr[data-input="{input_id}"]')
    expect(row).to_contain_text("dependency cycle: A -> B -> A")
    expect(page.locator("#inputs tbody tr")).to_have_count(2)

    # the inputs by status: each tab shows only its own, and stays so as the page refreshes
    page.locator('#input-filter a[data-status="pending"]').click()
    expect(page).to_have_url(f"{server}/?status=pending")
    expect(page.locator("#inputs tbody tr")).to_have_count(1)
    expect(page.locator(f'tr[data-input="{waiting}"]')).to_have_attribute("data-status",
                                                                          "pending")
    expect(page.locator("#live")).to_contain_text("live")
    expect(page.locator("#inputs tbody tr[data-input]")).to_have_count(1)
    page.locator('#input-filter a[data-status="failed"]').click()
    expect(page.locator('#input-filter a[aria-current="page"]')).to_have_attribute(
        "data-status", "failed")
    expect(page.locator("#inputs tbody tr")).to_have_count(1)
    expect(row).to_have_attribute("data-status", "failed")
    shot(page, "5-inputs-failed-only")

    # the input's page: the file's lines, each problem right under the line it points to
    row.get_by_role("link", name=str(input_id)).click()
    expect(page.get_by_role("alert")).to_contain_text("1 problem, shown in the file below")
    # (the planner names the task of a cycle in a YAML file: its first line, "- id: A")
    line = CYCLE.splitlines().index(b"  - id: A") + 1
    expect(page.locator(f"#source tr#L{line}")).to_contain_text("- id: A")
    beside = page.locator(f"#source tr#L{line} + tr.note.problem")
    expect(beside).to_contain_text("dependency cycle: A -> B -> A")
    expect(page.locator("#source tr.note")).to_have_count(1)
    expect(page.locator(f"#source tr#L{len(CYCLE.splitlines())}")).to_contain_text(
        "Load fixtures")
    # the message once: not again in the summary above the file
    expect(page.locator("#input-problems")).not_to_contain_text("dependency cycle")
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
    # the icon shows before signing in (the page's link, and /favicon.ico for any browser)
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    for path in (icon, "/favicon.ico"):
        r = page.request.get(f"{server}{path}")
        assert r.status == 200 and r.headers["content-type"].startswith("image/svg+xml"), path
        assert r.body().startswith(b"<svg"), path
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
    # while the plan is live its Gantt chart has a "now" line
    expect(page.locator("#gantt line.now")).to_have_count(1)
    blocked = page.locator("#blocked")
    expect(blocked).to_contain_text("Which database should the migration target?")
    expect(page.locator("#main")).to_contain_text("Waiting for A, which waits for a person.")
    shot(page, "7-blocked")
    page.locator("#note-A").fill("Postgres 15")
    page.get_by_role("button", name="Answer").click()
    expect(page.locator("h1")).to_contain_text("built", timeout=60_000)
    expect(page.locator("#gantt line.now")).to_have_count(0)
    assert fleet.executions(plan.id, "A")[1]["clarification"]["answer"] == "Postgres 15"


def test_a_revision_waiting_for_a_person_is_shown_and_applied_from_the_plan_page(
        fleet: Fleet, server: str, page: Any) -> None:
    from playwright.sync_api import expect

    # Given a plan building in manual mode, its long first task running, and a newer version
    # of its file (B removed, C added) waiting for a person
    fleet.workers()
    v1 = [{"id": "A", "title": "Long job", "args": {"sleep": 8.0}},
          {"id": "B", "title": "Old step", "depends_on": ["A"]}]
    fleet.submit(fleet.task_file(v1), name="living.yaml")
    plan_id = wait_for(lambda: (p := fleet.store.plans.list()) and p[0].id, timeout=60)
    assert isinstance(plan_id, int)
    wait_for(lambda: (s := fleet.store.steps.latest(plan_id).get("A")) is not None
             and s.status.value in ("dispatched", "running"), timeout=60)
    fleet.store.settings.update(auto_build=False)
    fleet.submit(fleet.task_file([v1[0], {"id": "C", "title": "New step",
                                          "depends_on": ["A"]}]), name="living.yaml")
    wait_for(lambda: any(r.status == "waiting" for r in fleet.store.revisions.of_plan(plan_id)),
             timeout=30)
    # When a person opens the plan: the revision and what it would do, with titles
    page.goto(f"{server}/plans/{plan_id}#token={TOKEN}")
    revision = page.locator("#revisions tr.revision")
    expect(revision).to_have_attribute("data-status", "waiting")
    expect(revision).to_contain_text("added: C New step")
    expect(revision).to_contain_text("removed: B Old step")
    expect(revision).to_contain_text("adopted: A Long job")
    shot(page, "8-revision-waiting")
    # and applies it (after saying yes)
    page.get_by_role("button", name="Apply revision").click()
    page.locator("dialog#confirm").get_by_role("button", name="Apply revision").click()
    expect(page.locator("#toast")).to_contain_text("will be applied")
    expect(revision).to_have_attribute("data-status", "applied", timeout=30_000)
    expect(page.locator("h1")).to_contain_text("built", timeout=60_000)
    shot(page, "8-revision-applied")
    # the steps table keeps B's history, marked as removed from its source
    expect(page.locator('#steps tr[data-task="B"]')).to_contain_text("Old step")
    expect(page.locator('#steps tr[data-task="B"]')).to_contain_text("removed from source")
    expect(revision).to_contain_text("removed: B Old step")
    # Then B never ran, C ran once, A once
    assert fleet.executions(plan_id, "B") == []
    assert len(fleet.executions(plan_id, "C")) == 1 == len(fleet.executions(plan_id, "A"))


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


def test_the_fleet_page_shows_a_solvers_busy_slots_and_the_plans_waiting_for_it(
        fleet: Fleet, server: str, page: Any) -> None:
    from playwright.sync_api import expect

    # Given one angrav slot for the fleet and two plans that each want it
    fleet.store.fleet.set_solver("angrav", 1)
    fleet.workers()
    for project in ("Storefront", "Billing"):
        fleet.submit(fleet.task_file(
            [{"id": "A", "title": f"Review the {project.lower()} diff", "solver": "angrav",
              "args": {"sleep": 20.0}}],
            project=project, solvers={"angrav": {"script": "f/test/work"}}))
    def first_steps() -> list[models.Step]:
        return [s for p in fleet.store.plans.list()
                if (s := fleet.store.steps.latest(p.id).get("A")) is not None]

    # (one step took the slot, the other is ready and waits for it)
    wait_for(lambda: sorted((s.active, s.ready_at is not None) for s in first_steps())
             == [(False, True), (True, False)], timeout=60)
    running = next(p for p in fleet.store.plans.list()
                   if fleet.store.steps.latest(p.id)["A"].active)
    waiting = next(p for p in fleet.store.plans.list() if p.id != running.id)
    # When a person opens the fleet page
    page.goto(f"{server}/fleet#token={TOKEN}")
    # Then angrav shows its one slot busy, one step waiting, and whose they are
    row = page.locator("tr", has=page.locator("td", has_text="angrav"))
    expect(row.locator("td").nth(1)).to_have_text("1")
    expect(row.locator("td").nth(2)).to_have_text("1")
    expect(row.locator("td").nth(3)).to_have_text("1")
    expect(row.locator("td").nth(4)).to_contain_text(str(running.id))
    expect(row.locator("td").nth(5)).to_contain_text(str(waiting.id))
    plans = page.locator("tr[data-plan]")
    expect(plans).to_have_count(2)
    expect(page.locator(f'tr[data-plan="{running.id}"] td').nth(2)).to_have_text("1")
    expect(page.locator(f'tr[data-plan="{waiting.id}"] td').nth(3)).to_have_text("1")
    expect(page.locator("#main")).to_contain_text("Storefront")
    expect(page.locator("#main")).to_contain_text("Billing")
    shot(page, "10-fleet")
    # and the waiting plan's page says why its task waits
    page.goto(f"{server}/plans/{waiting.id}")
    expect(page.locator("#main")).to_contain_text("1 task in 1 wave ·")
    expect(page.locator("#main")).to_contain_text(
        f"waiting for a free angrav slot: 1 of 1 busy, plan {running.id}")
    shot(page, "10-plan-waiting-for-a-slot")
