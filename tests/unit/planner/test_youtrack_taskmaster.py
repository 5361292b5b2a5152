"""YouTrack exports as real responses have them, and Taskmaster tasks.json."""

from __future__ import annotations

import json
from typing import Any

import pytest

from planfleet import youtrack
from planfleet.planner import PlanningError, load, load_checked


def issue(key: str, *, links: list[dict[str, Any]] | None = None,
          fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"idReadable": key, "summary": key.lower(), "customFields": fields or [],
            "links": links or []}


def depend(direction: str, *others: str, key: str = "issues",
           link_type: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"direction": direction, "linkType": link_type or {"name": "Depend"},
            key: [{"idReadable": o, "resolved": None} for o in others]}


def deps(export: Any) -> dict[str, tuple[str, ...]]:
    return {t.id: t.depends_on for t in load(json.dumps(export).encode(), "e.json").tasks}


def test_a_depend_link_by_name_only_reads_youtracks_default_direction() -> None:
    # the outward end of "Depend" is "is required for": A is required for B, so B waits for A
    export = [issue("S-1", links=[depend("OUTWARD", "S-2")]),
              issue("S-2", links=[depend("INWARD", "S-1")])]
    assert deps(export) == {"S-1": (), "S-2": ("S-1",)}


def test_named_directions_still_win() -> None:
    named = {"name": "Depend", "sourceToTarget": "depends on", "targetToSource": "is required for"}
    export = [issue("S-1", links=[depend("OUTWARD", "S-2", link_type=named)]), issue("S-2")]
    assert deps(export) == {"S-1": ("S-2",), "S-2": ()}


def test_trimmed_issues_are_read_like_issues() -> None:
    export = [issue("S-1", links=[depend("OUTWARD", "S-2", key="trimmedIssues")]), issue("S-2")]
    assert deps(export) == {"S-1": (), "S-2": ("S-1",)}


def test_a_link_type_without_direction_names_is_a_warning_not_a_guess() -> None:
    export = [issue("S-1", links=[depend("OUTWARD", "S-2", link_type={"name": "Blocks-ish"})]),
              issue("S-2", links=[depend("BOTH", "S-1", link_type={"name": "Relates"})])]
    tl = load(json.dumps(export).encode(), "e.json")
    assert {t.id: t.depends_on for t in tl.tasks} == {"S-1": (), "S-2": ()}
    codes = [(w.code, w.task) for w in tl.warnings]
    assert ("unknown_link", "S-1") in codes and all(t != "S-2" for _, t in codes
                                                    if _ == "unknown_link")


def period(minutes: int | None, presentation: str | None = None) -> dict[str, Any]:
    return {"minutes": minutes, "presentation": presentation}


def test_estimates_from_minutes_or_presentation_and_a_missing_field_is_warned() -> None:
    export = [issue("S-1", fields=[{"name": "Estimation", "value": period(90)}]),
              issue("S-2", fields=[{"name": "Estimation", "value": period(None, "1w 2d 3h")}])]
    tl = load(json.dumps(export).encode(), "e.json")
    assert [t.estimate for t in tl.tasks] == [90, 2400 + 960 + 180]
    assert tl.warnings == ()
    other = [issue("S-1", fields=[{"name": "Time", "value": period(90)}])]
    tl = load(json.dumps(other).encode(), "e.json")
    assert [w.code for w in tl.warnings] == ["no_estimate_field"]
    assert "'Estimation'" in tl.warnings[0].message


def test_another_estimate_field_and_custom_priorities_through_the_envelope() -> None:
    issues = [issue("S-1", fields=[{"name": "Time", "value": period(90)},
                                   {"name": "Priority", "value": {"name": "Nice to have"}}]),
              issue("S-2", fields=[{"name": "Priority", "value": {"name": "Show-stopper"}}])]
    doc = youtrack.document(issues, project="S", estimate_field="Time",
                            priorities=youtrack.parse_priorities(["Nice to have=10"]))
    tl = load(json.dumps(doc).encode(), "e.json")
    assert [(t.estimate, t.priority) for t in tl.tasks][0] == (90, 10)
    assert tl.tasks[1].priority == 100
    assert tl.source == "youtrack:S"
    # the defaults: only what was pulled beside the issues
    plain = youtrack.document(issues[1:], project="S", query="  tag:  x ")
    assert plain == {"format": "youtrack", "project": "S", "query": "tag: x",
                     "issues": issues[1:]}
    assert load(json.dumps(plain).encode(), "e.json").source == "youtrack:S?tag: x"
    with pytest.raises(ValueError, match="NAME=NUMBER"):
        youtrack.parse_priorities(["oops"])
    with pytest.raises(ValueError, match="whole number"):
        youtrack.parse_priorities(["High=x"])


def test_an_unknown_custom_priority_is_a_named_error() -> None:
    export = [issue("S-1", fields=[{"name": "Priority", "value": {"name": "Nice to have"}}])]
    with pytest.raises(PlanningError) as info:
        load_checked(json.dumps(export).encode(), "e.json")
    assert [p.code for p in info.value.problems] == ["bad_priority"]


@pytest.mark.parametrize("old", [
    {"issue": [{"id": "S-1", "field": [{"name": "summary", "value": "x"}]}]},
    [{"id": "S-1", "field": [{"name": "summary", "value": "x"}]},
     {"id": "S-2", "field": []}],
    [{"$type": "Issue", "id": "2-1", "summary": "x", "customFields": []}],
])
def test_another_response_shape_is_one_clear_error(old: Any) -> None:
    with pytest.raises(PlanningError) as info:
        load_checked(json.dumps(old).encode(), "e.json")
    (p,) = info.value.problems
    assert p.code == "unknown_format" and "idReadable" in p.message


TASKMASTER = {
    "tasks": [
        {"id": 1, "title": "Setup", "description": "", "status": "done", "dependencies": [],
         "priority": "high", "details": "", "testStrategy": "", "subtasks": []},
        {"id": 2, "title": "Models", "status": "pending", "dependencies": [1],
         "priority": "high", "details": "", "subtasks": [
             {"id": 1, "title": "User model", "status": "done", "dependencies": []},
             {"id": 2, "title": "Order model", "status": "pending", "dependencies": [1]},
             {"id": 3, "title": "Migrations", "status": "in-progress", "dependencies": [2]}]},
        {"id": 3, "title": "API", "status": "pending", "dependencies": [2],
         "priority": "medium", "details": "", "subtasks": []},
        {"id": 4, "title": "Docs", "status": "deferred", "dependencies": ["2.3", 3],
         "priority": "low", "subtasks": []},
    ],
    "metadata": {"projectName": "demo"},
}


def test_taskmaster() -> None:
    tl = load(json.dumps(TASKMASTER).encode(), "tasks.json")
    assert tl.format == "taskmaster"
    got = {t.id: (set(t.depends_on), t.priority) for t in tl.tasks}
    # done 1 and 2.1 are left out and met; 2 is planned as its open subtasks
    assert got == {"2.2": (set(), 75), "2.3": ({"2.2"}, 75), "3": ({"2.2", "2.3"}, 50),
                   "4": ({"2.3", "3"}, 25)}


def test_tagged_taskmaster_files() -> None:
    one = {"master": {"tasks": TASKMASTER["tasks"], "metadata": {}}}
    assert {t.id for t in load(json.dumps(one).encode(), "tasks.json").tasks} == {
        "2.2", "2.3", "3", "4"}
    two = {**one, "feature-x": {"tasks": [{"id": 1, "title": "X", "status": "pending",
                                           "dependencies": []}]}}
    ids = {t.id for t in load(json.dumps(two).encode(), "tasks.json").tasks}
    assert ids == {"master:2.2", "master:2.3", "master:3", "master:4", "feature-x:1"}


def test_taskmaster_all_done() -> None:
    doc = {"tasks": [{"id": 1, "title": "x", "status": "done", "subtasks": []}]}
    with pytest.raises(PlanningError) as info:
        load_checked(json.dumps(doc).encode(), "tasks.json")
    assert info.value.problems[0].message == "every task is already done (1 done)"
