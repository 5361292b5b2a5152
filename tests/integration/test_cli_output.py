"""What the command line shows a person: readable at 80 columns, one duration format, a clear
word for an unknown id, and ``--wait`` that waits for what it names."""

from __future__ import annotations

import json
import time

from planfleet import models
from tests.integration.conftest import Fleet
from tests.integration.test_pipeline import finished, plan_of

LONG_ID = "SAM-" + "x" * 40


def test_show_fits_80_columns_with_long_ids_and_errors(fleet: Fleet) -> None:
    fleet.env.update(COLUMNS="80", PLANFLEET_STEP_MAX_ATTEMPTS="2",
                     PLANFLEET_ON_EXHAUSTED="fail")
    fleet.workers()
    input_id = fleet.submit(fleet.task_file([
        {"id": LONG_ID, "estimate": "10h", "args": {"fail_times": 5}},
        {"id": "B", "estimate": 30, "depends_on": [LONG_ID]},
    ]))
    p = finished(fleet, plan_of(fleet, input_id).id)
    assert p.status is models.PlanStatus.FAILED
    r = fleet.cli("show", str(p.id))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # nothing wider, but a link alone on its line (kept whole, to be copied)
    too_wide = [ln for ln in lines if len(ln) > 80 and " " in ln.strip()]
    assert not too_wide, "\n".join(too_wide)
    # the header in the one duration format; every attempt on a line of its own
    assert "makespan 10h30m (lower bound 10h30m)" in lines[0]
    rows = [ln for ln in lines if " failed " in ln and "RuntimeError" in ln]
    assert [ln.split()[1] for ln in rows] == ["1", "2"], r.stdout
    assert any("dependency" in ln and " skipped " in ln for ln in lines)
    # the task id is folded, not cut: its pieces are all there
    assert "".join(ln.split()[0] for ln in lines if ln.startswith("SAM-x") or
                   ln.startswith("xxxx")).startswith(LONG_ID)


def test_plans_show_makespans_in_the_one_format(fleet: Fleet) -> None:
    fleet.workers()
    input_id = fleet.submit(fleet.task_file([{"id": "A", "estimate": "1d"}]))
    finished(fleet, plan_of(fleet, input_id).id)
    r = fleet.cli("plans")
    assert r.returncode == 0
    (row,) = [ln for ln in r.stdout.splitlines() if " built " in ln]
    assert " 8h " in row, r.stdout  # an estimate's day is a working day: 8 hours, shown as such


def test_unknown_ids_are_refused_with_the_reason(fleet: Fleet) -> None:
    r = fleet.cli("enqueue-plan", "999")
    assert r.returncode == 3
    assert "input 999 does not exist" in r.stderr and "Traceback" not in r.stderr
    r = fleet.cli("show", "999")
    assert r.returncode == 3 and "plan 999 does not exist" in r.stderr


def test_wait_gives_up_after_its_time_with_exit_1(fleet: Fleet) -> None:
    started = time.monotonic()
    r = fleet.cli("inputs", "--status", "pending", "--wait", "1")
    took = time.monotonic() - started
    assert r.returncode == 1 and "no input pending after 1 s" in r.stderr
    assert took >= 1.0
    r = fleet.cli("show", "5", "--wait", "0.5")
    assert r.returncode == 1 and "plan 5 not found after 0.5 s" in r.stderr


def test_wait_returns_once_the_input_is_there(fleet: Fleet) -> None:
    fleet.submit(fleet.task_file([{"id": "A"}]), queue=False)
    r = fleet.cli("inputs", "--status", "pending", "--wait", "30", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["status"] for ln in r.stdout.splitlines()] == ["pending"]
