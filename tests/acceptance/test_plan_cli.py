"""`planfleet plan` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = str(Path(sys.executable).parent / "planfleet")

SAM = """project: SAM
max_parallel: 2
tasks:
  - {id: SAM-100, title: Schema, estimate: 30}
  - {id: SAM-101, title: Login, estimate: 45m, depends_on: [SAM-100], priority: high}
  - {id: SAM-102, title: Logout, estimate: 1h, depends_on: [SAM-100]}
  - {id: SAM-103, title: Docs, estimate: 20}
"""


def plan(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, "plan", *args], input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_json_plan_on_stdout_and_nothing_else(tmp_path: Path) -> None:
    f = tmp_path / "sam.yaml"
    f.write_text(SAM)
    r = plan(str(f), "--json")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert set(p["schedule"]) == {"SAM-100", "SAM-101", "SAM-102", "SAM-103"}
    assert p["schedule"]["SAM-101"]["start"] >= p["schedule"]["SAM-100"]["finish"]
    for key in ("batches", "immediate_batch", "makespan", "lower_bound", "critical_path",
                "explanation", "priority_order"):
        assert key in p
    assert p["max_parallel"] == 2 and p["critical_path"] == ["SAM-100", "SAM-102"]
    r = plan(str(f), "--json", "--max-parallel", "1")
    assert json.loads(r.stdout)["makespan"] == 30 + 45 + 60 + 20


def test_readable_plan_has_a_gantt_chart() -> None:
    r = plan("-", stdin=SAM)
    assert r.returncode == 0, r.stderr
    assert "makespan 1h30m" in r.stdout
    assert "SAM-102" in r.stdout and "|" in r.stdout and "#" in r.stdout


def test_errors_are_json_on_stderr_with_exit_2() -> None:
    r = plan("-", "--json", stdin="tasks:\n  - {id: A, depends_on: [B]}\n  - {id: B, depends_on: [A]}\n")
    assert r.returncode == 2 and r.stdout == ""
    err = json.loads(r.stderr)
    assert err["problems"][0]["code"] == "cycle"
    assert "A -> B -> A" in err["problems"][0]["message"]


def test_readable_errors_list_every_problem(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("tasks:\n  - {id: A, estimate: soon}\n  - {id: A}\n  - {id: C, depends_on: [Q]}\n")
    r = plan(str(f))
    assert r.returncode == 2
    assert "cannot plan" in r.stderr and "(3 problems)" in r.stderr
    assert "estimate 'soon'" in r.stderr and "duplicate task id 'A'" in r.stderr
    assert "unknown task 'Q'" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_file_is_a_clear_error() -> None:
    r = plan("/nonexistent/tasks.yaml", "--json")
    assert r.returncode == 2 and "cannot read" in json.loads(r.stderr)["error"]


def test_windmill_flow_output(tmp_path: Path) -> None:
    f = tmp_path / "sam.yaml"
    f.write_text(SAM)
    r = plan(str(f), "--windmill-flow")
    assert r.returncode == 0, r.stderr
    flow = json.loads(r.stdout)
    assert flow["value"]["modules"][0]["value"]["type"] == "branchall"
