"""Task-list formats and field rules."""

from __future__ import annotations

import json

import pytest

from planfleet.planner import PlanningError, load, parse, plan_bytes
from planfleet.planner import tasks as t


def problems_of(content: bytes, name: str = "t.yaml") -> list[tuple[str, str | None, int | None]]:
    with pytest.raises(PlanningError) as info:
        plan_bytes(content, name)
    return [(p.code, p.task, p.line) for p in info.value.problems]


@pytest.mark.parametrize(
    ("value", "minutes"),
    [(45, 45.0), (2.5, 2.5), ("45", 45.0), ("45m", 45.0), ("2h", 120.0), ("1h30m", 90.0),
     ("1.5h", 90.0), ("90 min", 90.0), ("1d", 480.0), ("1w", 2400.0), ("0", 0.0)],
)
def test_estimates(value: object, minutes: float) -> None:
    assert t.parse_estimate(value) == minutes


@pytest.mark.parametrize("value", [-1, "soon", "", True, [1], float("nan"), float("inf"), 1e12])
def test_bad_estimates(value: object) -> None:
    with pytest.raises(ValueError):
        t.parse_estimate(value)


@pytest.mark.parametrize(
    ("value", "number"),
    [("critical", 100), ("High", 75), ("normal", 50), ("low", 25), ("idle", 0), (60, 60),
     ("Show-stopper", 100), ("Major", 75), ("-5", -5)],
)
def test_priorities(value: object, number: int) -> None:
    assert t.parse_priority(value) == number


def test_native_yaml_and_json_agree() -> None:
    doc = {
        "project": "SAM",
        "max_parallel": 4,
        "solvers": {"angrav": {"script": "f/angrav/solver_dispatch", "capacity": 5}},
        "tasks": [
            {"id": "SAM-100", "title": "Schema", "estimate": "30m"},
            {"id": "SAM-101", "title": "Login", "estimate": 45, "priority": "high",
             "depends_on": ["SAM-100"], "solver": "angrav", "parallel": True,
             "args": {"issue_id": "SAM-101"}},
        ],
    }
    import yaml

    from_json = load(json.dumps(doc).encode(), "sam.json")
    from_yaml = load(yaml.safe_dump(doc).encode(), "sam.yaml")
    assert from_json.tasks == from_yaml.tasks
    assert from_json.format == "json" and from_yaml.format == "yaml"
    assert from_yaml.max_parallel == 4 and from_yaml.solvers["angrav"].capacity == 5
    login = from_yaml.tasks[1]
    assert (login.estimate, login.priority, login.depends_on, login.solver) == (
        45.0, 75, ("SAM-100",), ("angrav",))


def test_a_bare_list_and_a_bom_are_accepted() -> None:
    tl = load(b"\xef\xbb\xbf[{\"id\": \"A\"}, {\"id\": \"B\", \"depends_on\": \"A\"}]", "x.json")
    assert [x.id for x in tl.tasks] == ["A", "B"] and tl.tasks[1].depends_on == ("A",)


def test_youtrack_export() -> None:
    export = [
        {"idReadable": "SAM-1", "summary": "Schema",
         "customFields": [{"name": "Priority", "value": {"name": "Critical"}},
                          {"name": "Estimation", "value": {"minutes": 120, "presentation": "2h"}}],
         "links": [{"direction": "INWARD",
                    "linkType": {"name": "Depend", "sourceToTarget": "depends on",
                                 "targetToSource": "is required for"},
                    "issues": [{"idReadable": "SAM-2"}]}]},
        {"idReadable": "SAM-2", "summary": "Login",
         "customFields": [{"name": "Priority", "value": {"name": "Normal"}},
                          {"name": "Estimation", "value": None}],
         "links": [{"direction": "OUTWARD",
                    "linkType": {"name": "Depend", "sourceToTarget": "depends on",
                                 "targetToSource": "is required for"},
                    "issues": [{"idReadable": "SAM-1"}, {"idReadable": "OLD-9", "resolved": 1}]}]},
        {"idReadable": "SAM-3", "summary": "Docs", "customFields": [], "links": []},
    ]
    tl = load(json.dumps(export).encode(), "export.json")
    assert tl.format == "youtrack"
    by_id = {x.id: x for x in tl.tasks}
    assert by_id["SAM-1"].priority == 100 and by_id["SAM-1"].estimate == 120
    assert by_id["SAM-2"].depends_on == ("SAM-1",)  # resolved OLD-9 is done already
    assert by_id["SAM-2"].args == {"issue_id": "SAM-2"}
    assert by_id["SAM-3"].depends_on == ()


def test_youtrack_dependency_on_an_open_issue_outside_the_export_is_reported() -> None:
    export = [{"idReadable": "SAM-2", "summary": "x", "links": [
        {"direction": "OUTWARD", "linkType": {"name": "Depend", "sourceToTarget": "depends on",
                                              "targetToSource": "is required for"},
         "issues": [{"idReadable": "SAM-77"}]}]}]
    assert problems_of(json.dumps(export).encode(), "e.json") == [
        ("unknown_dependency", "SAM-2", None)
    ]


SPECKIT = b"""# Tasks: Login feature

## Phase 3.1: Setup
- [x] T001 Create project structure
- [ ] T002 [P] Configure linting in .ruff.toml
- [ ] T003 [P] Add CI workflow

## Phase 3.2: Tests first
- [ ] T004 [P] Contract test POST /login in tests/contract/test_login.py
- [ ] T005 [P] Contract test POST /logout in tests/contract/test_logout.py
- [ ] T006 Integration test for the session flow

## Phase 3.3: Core
- [ ] T007 [P] [US1] User model in src/models/user.py
- [ ] T008 Login service (depends on T004)
"""


def test_speckit_phases_and_parallel_marks() -> None:
    tl = load(SPECKIT, "tasks.md")
    deps = {x.id: set(x.depends_on) for x in tl.tasks}
    assert "T001" not in deps  # done
    assert deps["T002"] == set() and deps["T003"] == set()
    assert deps["T004"] == {"T002", "T003"} and deps["T005"] == {"T002", "T003"}
    assert deps["T006"] == {"T002", "T003", "T004", "T005"}
    assert deps["T007"] == {"T006"}
    assert deps["T008"] == {"T006", "T007", "T004"}
    t7 = next(x for x in tl.tasks if x.id == "T007")
    assert t7.args["story"] == "US1" and t7.args["phase"] == "Phase 3.3: Core"
    assert t7.line == 14


def test_speckit_problems_carry_line_numbers() -> None:
    doc = b"## Phase 1\n- [ ] T001 One\n- [ ] T001 Again\n- [ ] T002 Two (depends on T009)\n"
    assert problems_of(doc, "tasks.md") == [
        ("duplicate_id", "T001", 3),
        ("unknown_dependency", "T002", 4),
    ]


def test_every_problem_is_collected_together() -> None:
    doc = b"""
tasks:
  - {id: A, depends_on: [B]}
  - {id: B, depends_on: [C]}
  - {id: C, depends_on: [A]}
  - {id: D, depends_on: [Z], estimate: -3}
  - {id: D}
  - {id: E, depends_on: [E], priority: urgentish, colour: red}
  - {id: F, solver: nobody}
  - {title: no id}
"""
    got = problems_of(doc)
    codes = sorted(code for code, _, _ in got)
    assert codes == sorted([
        "bad_estimate", "bad_priority", "bad_field", "bad_id", "duplicate_id",
        "unknown_dependency", "self_dependency", "cycle",
    ])


def test_cycles_are_named_in_order_and_tangles_listed() -> None:
    doc = {"tasks": [{"id": f"N{i}", "depends_on": [f"N{(i + 1) % 5}"]} for i in range(5)]
           + [{"id": "X", "depends_on": ["Y"]}, {"id": "Y", "depends_on": ["X", "N0"]}]}
    with pytest.raises(PlanningError) as info:
        plan_bytes(json.dumps(doc).encode(), "c.json")
    messages = [p.message for p in info.value.problems]
    assert "dependency cycle: N0 -> N1 -> N2 -> N3 -> N4 -> N0" in messages[0]
    assert "X -> Y -> X" in messages[1] or "Y -> X -> Y" in messages[1]
    # a tangle: every task in one big strongly connected component
    tangle = {"tasks": [{"id": f"T{i}", "depends_on": [f"T{(i + 1) % 30}", f"T{(i + 7) % 30}"]}
                        for i in range(30)]}
    with pytest.raises(PlanningError) as info:
        plan_bytes(json.dumps(tangle).encode(), "c.json")
    (p,) = info.value.problems
    assert "30 tasks are tangled in cycles together" in p.message


@pytest.mark.parametrize(
    ("content", "name", "code"),
    [
        (b"", "a.yaml", "empty"),
        (b"   \n", "a.json", "empty"),
        (b"tasks: []", "a.yaml", "empty"),
        (b"\x00\x01\x02binary", "a.json", "unknown_format"),
        (b"\xff\xfe bad utf8", "a.yaml", "encoding"),
        (b'{"tasks": [', "a.json", "parse_error"),
        (b"just some words", "notes.txt", "unknown_format"),
        (b"[" * 10000 + b"]" * 10000, "deep.json", "parse_error"),
        (b"a: &a [1,2]\n" + b"".join(b"b%d: &b%d [*a,*a,*a]\n" % (i, i) for i in range(200)),
         "bomb.yaml", "parse_error"),
        (b"- [x] T001 done already\n", "tasks.md", "empty"),
        (b"# nothing here\n", "tasks.md", "unknown_format"),
        (b'{"tasks": {"a": 1}}', "a.json", "bad_field"),
        (b'{"max_parallel": 0, "tasks": [{"id": "A"}]}', "a.json", "bad_field"),
        (b'{"solvers": {"s": {"capacity": 0}}, "tasks": [{"id": "A"}]}', "a.json", "bad_capacity"),
        (b'{"tasks": [{"id": "' + b"x" * 300 + b'"}]}', "a.json", "bad_id"),
    ],
)
def test_bad_files_get_a_specific_problem(content: bytes, name: str, code: str) -> None:
    codes = [c for c, _, _ in problems_of(content, name)]
    assert code in codes, codes


def test_parse_returns_partial_lists_with_their_problems() -> None:
    tl, problems = parse(b"tasks: [{id: A, estimate: soon}, {id: B}]", "a.yaml")
    assert tl is not None and [x.id for x in tl.tasks] == ["A", "B"]
    assert [p.code for p in problems] == ["bad_estimate"]


def test_per_task_step_policy_fields() -> None:
    tl = load(b"tasks: [{id: A, max_attempts: 5, timeout: 30m}, {id: B, timeout: 90}]", "a.yaml")
    assert (tl.tasks[0].max_attempts, tl.tasks[0].timeout) == (5, 1800.0)
    assert (tl.tasks[1].max_attempts, tl.tasks[1].timeout) == (None, 90.0)
    codes = [c for c, _, _ in problems_of(b"tasks: [{id: A, max_attempts: 0, timeout: -1}]")]
    assert codes == ["bad_field", "bad_field"]


def test_a_timeout_is_wall_clock_and_an_estimate_working_time() -> None:
    tl = load(b"tasks: [{id: A, estimate: 1d, timeout: 1d}, {id: B, timeout: '90'}]", "a.yaml")
    assert tl.tasks[0].estimate == 8 * 60  # minutes: a working day
    assert tl.tasks[0].timeout == 24 * 3600  # seconds: a day
    assert tl.tasks[1].timeout == 90.0  # a bare number is seconds, written as text or not
    with pytest.raises(PlanningError) as info:
        plan_bytes(b"tasks: [{id: A, timeout: soon}]", "a.yaml")
    (problem,) = info.value.problems
    assert problem.field == "timeout" and "wall-clock duration" in problem.message
