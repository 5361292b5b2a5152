"""Source keys: which lineage an input belongs to, and what the planner reads of it."""

from __future__ import annotations

import json

import pytest

from planfleet import sources
from planfleet.planner import PlanningError, formats
from planfleet.sources import Intake


def test_a_file_without_a_declared_source_belongs_to_its_name_by_its_way_in() -> None:
    body = b"tasks: [{id: A}]\n"
    assert sources.of_input(Intake.WATCH_DIR, "plan.yaml", body) == "file:plan.yaml"
    assert sources.of_input(Intake.UPLOAD, "plan.yaml", body) == "upload:plan.yaml"
    assert sources.of_input(Intake.WATCH_DIR, "big.yaml", None) == "file:big.yaml"
    assert sources.intake_of_dir(sources.UPLOAD_DIR) is Intake.UPLOAD
    assert sources.intake_of_dir("/srv/in") is Intake.WATCH_DIR


@pytest.mark.parametrize("body", [
    b"source: sam-backlog\ntasks: [{id: A}]\n",
    b"# the backlog\nproject: SAM\nsource:   'sam-backlog'   # one lineage\ntasks: [{id: A}]\n",
    b'\xef\xbb\xbf"source": "sam-backlog"\ntasks: [{id: A}]\n',
    b'{"tasks": [{"id": "A"}], "source": "sam-backlog"}',
    b'  {"source": " sam-backlog ", "tasks": []}',
])
def test_an_explicit_source_key_wins_whatever_the_name_or_the_way_in(body: bytes) -> None:
    for intake in Intake:
        assert sources.of_input(intake, "x.yaml", body) == "key:sam-backlog"


@pytest.mark.parametrize("body", [
    b"tasks: [{id: A, args: {source: x}}]\n",       # not top-level
    b"  source: x\ntasks: []\n",                     # indented: not top-level
    b"source:\n  - a\ntasks: []\n",                  # not text
    b"source: ''\ntasks: []\n",
    b'{"source": 1.5, "tasks": []}',
    b'[{"source": "x"}]',
    b'{"source": "x", "tasks": [}',                  # not JSON
    b"\xff\xfesource: x",                            # not UTF-8
    b"source: a\x01b\n",
])
def test_what_is_not_a_readable_top_level_key_declares_nothing(body: bytes) -> None:
    assert sources.declared(body) is None
    assert sources.of_input(Intake.WATCH_DIR, "n.yaml", body) == "file:n.yaml"


def test_a_markdown_task_list_declares_nothing_whatever_its_lines_say() -> None:
    body = b"# Tasks\nsource: the spec, section 3\n\n- [ ] T001 Do it\n"
    assert sources.declared(body, "tasks.md") is None
    assert sources.declared(body, "notes.txt") is None  # detected as tasks.md by its lines
    assert sources.of_input(Intake.WATCH_DIR, "tasks.md", body) == "file:tasks.md"
    assert formats.load(body, "tasks.md").source is None


def test_a_youtrack_pull_is_its_project_and_search_terms() -> None:
    assert sources.youtrack("SAM") == "youtrack:SAM"
    assert sources.youtrack("SAM", "  Priority:   Critical ") == "youtrack:SAM?Priority: Critical"
    body = json.dumps({"format": "youtrack", "project": "SAM", "query": "Priority: Critical",
                       "issues": []}).encode()
    assert sources.of_input(Intake.WATCH_DIR, "youtrack-SAM-1.json", body) == (
        "youtrack:SAM?Priority: Critical")
    assert sources.declared(json.dumps({"format": "youtrack", "project": "SAM",
                                        "query": "x" * 1001}).encode()) is None


def test_a_person_names_a_source_by_its_key_or_a_file_name() -> None:
    assert sources.parse_argument("file:plan.yaml") == ("file:plan.yaml", "file:plan.yaml")
    assert sources.parse_argument("youtrack:SAM?x") == ("youtrack:SAM?x", "youtrack:SAM?x")
    assert sources.parse_argument("plan.yaml") == (None, "plan.yaml")
    assert sources.parse_argument("odd:name.yaml") == (None, "odd:name.yaml")
    assert sources.parse_argument("key:") == (None, "key:")


# -- what the planner reads ------------------------------------------------------------------

def test_the_native_format_takes_a_source_and_checks_it() -> None:
    tl = formats.load(b"source: sam\ntasks: [{id: A}]\n", "t.yaml")
    assert tl.source == "key:sam"
    assert formats.load(b"tasks: [{id: A}]\n", "t.yaml").source is None
    with pytest.raises(PlanningError, match="source is empty"):
        formats.load(b"source: ''\ntasks: [{id: A}]\n", "t.yaml")


def test_a_source_the_quick_look_cannot_read_is_a_field_error_not_a_second_lineage() -> None:
    # a flow mapping on one line: YAML, but no top-level 'source:' line
    with pytest.raises(PlanningError, match="on a line of its own") as err:
        formats.load(b"{source: sam, tasks: [{id: A}]}\n", "t.yaml")
    assert err.value.problems[0].field == "source"


def test_the_youtrack_envelope_names_what_was_pulled() -> None:
    issue = {"idReadable": "SAM-1", "summary": "One", "customFields": [], "links": []}
    body = json.dumps({"format": "youtrack", "project": "SAM", "query": "tag: x",
                       "issues": [issue]}).encode()
    assert formats.load(body, "y.json").source == "youtrack:SAM?tag: x"
    bad = json.dumps({"format": "youtrack", "project": "", "issues": [issue]}).encode()
    with pytest.raises(PlanningError, match="'project' must name"):
        formats.load(bad, "y.json")


def test_tasks_done_in_the_source_are_recorded_on_the_task_list() -> None:
    md = formats.load(b"- [x] T001 One\n- [ ] T002 Two\n- [X] T003 Three\n", "tasks.md")
    assert md.done_in_source == ("T001", "T003")
    assert [t.id for t in md.tasks] == ["T002"]
    tm = formats.load(json.dumps({"tasks": [
        {"id": 1, "title": "a", "status": "done"},
        {"id": 2, "title": "b", "status": "pending", "dependencies": [1]}]}).encode(), "t.json")
    assert tm.done_in_source == ("1",)
    issues = [{"idReadable": "SAM-2", "summary": "b", "customFields": [], "links": [
        {"direction": "INWARD", "linkType": {"name": "Depend"},
         "issues": [{"idReadable": "SAM-1", "resolved": 1700000000}]}]}]
    yt = formats.load(json.dumps(issues).encode(), "y.json")
    assert yt.done_in_source == ("SAM-1",) and yt.tasks[0].depends_on == ()


def test_the_revision_policy_is_part_of_the_file_s_policy() -> None:
    tl = formats.load(b"policy: {on_change: finish, on_removed: cancel, cascade: true}\n"
                      b"tasks: [{id: A}]\n", "t.yaml")
    assert (tl.policy.on_change, tl.policy.on_removed, tl.policy.cascade) == (
        "finish", "cancel", True)
    with pytest.raises(PlanningError) as err:
        formats.load(b"policy: {on_change: later, cascade: 1}\ntasks: [{id: A}]\n", "t.yaml")
    assert {p.field for p in err.value.problems} == {"policy.on_change", "policy.cascade"}
