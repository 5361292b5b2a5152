"""`planfleet windmill validate`: the shipped assets pass; each kind of breakage is named."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from planfleet import assets
from planfleet.config import SHIPPED_SCRIPTS

SHIPPED = SHIPPED_SCRIPTS
BIN = str(Path(sys.executable).parent / "planfleet")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "windmill"
    shutil.copytree(SHIPPED, root)
    return root


def messages(root: Path, tasks: list[Path] | None = None) -> list[str]:
    return [str(p) for p in assets.validate(root, tasks or [])]


def test_the_shipped_assets_are_consistent() -> None:
    assert messages(SHIPPED) == []
    r = subprocess.run([BIN, "windmill", "validate"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_missing_main(copy: Path) -> None:
    script = copy / "f/planner/solver_dispatch.py"
    script.write_text(script.read_text().replace("def main(", "def run("))
    assert messages(copy) == ["f/planner/solver_dispatch.py: has no main function"]


def test_schema_drift(copy: Path) -> None:
    script = copy / "f/planner/solver_dispatch.py"
    text = script.read_text().replace("    work_seconds: float = 0.0,\n",
                                      "    work_seconds: float = 0.0,\n    agent: str = '',\n")
    text = text.replace("plan_id: int = 0", "plan_id: str = ''")
    script.write_text(text.replace("    issue_id: str = \"\",\n", ""))
    assert sorted(messages(copy)) == sorted([
        "f/planner/solver_dispatch.py: 'plan_id' is string in main but integer in the schema",
        "f/planner/solver_dispatch.py: main takes 'agent', which the schema does not list",
        "f/planner/solver_dispatch.py: the schema lists 'issue_id', which main does not take",
    ])


def test_required_mismatch_and_missing_metadata(copy: Path) -> None:
    script = copy / "f/planner/solver_dispatch.py"
    script.write_text(script.read_text().replace('title: str = ""', "title: str"))
    (copy / "f/planner/lonely.py").write_text("def main(x: int) -> int:\n    return x\n")
    assert sorted(messages(copy)) == [
        "f/planner/lonely.py: has no metadata (lonely.script.yaml is missing)",
        "f/planner/solver_dispatch.py: 'title' is required in main but optional in the schema",
    ]


def test_dangling_flow_module_and_schedule(copy: Path) -> None:
    flow = copy / "f/planner/nightly.flow"
    flow.mkdir()
    (flow / "flow.yaml").write_text(
        "summary: nightly\nvalue:\n  modules:\n"
        "    - id: ok\n      value: {type: script, path: f/planner/solver_dispatch,"
        " input_transforms: {}}\n"
        "    - id: wave\n      value:\n        type: branchall\n        branches:\n"
        "          - modules:\n              - id: gone\n                value: {type: script,"
        " path: f/planner/vanished, input_transforms: {}}\n")
    sched = copy / "f/planner/planner_dispatch.schedule.yaml"
    sched.write_text(sched.read_text().replace("project: SAM", "project: SAM\n  colour: red"))
    (copy / "wmill.yaml").write_text("- just\n- a list\n")
    assert sorted(messages(copy)) == sorted([
        "f/planner/nightly.flow/flow.yaml: module 'gone' runs f/planner/vanished, which does "
        "not exist",
        "f/planner/planner_dispatch.schedule.yaml: passes 'colour', which "
        "f/planner/planner_dispatch does not take",
        "wmill.yaml: is not a mapping",
    ])


def test_task_files_must_name_scripts_that_exist(copy: Path, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("solvers: {jules: {script: f/planner/jules}}\n"
                     "tasks: [{id: A, solver: jules}, {id: B}, {id: C, script: f/x/y}]\n")
    assert messages(copy, [tasks]) == [
        f"{tasks}: task A would run f/planner/jules, which does not exist",
        f"{tasks}: task C would run f/x/y, which does not exist",
    ]
    r = subprocess.run([BIN, "windmill", "validate", str(copy), "--tasks", str(tasks)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "2 problems" in r.stderr and "f/x/y" in r.stderr
