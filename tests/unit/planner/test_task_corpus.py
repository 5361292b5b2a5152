"""Real task lists from public repositories (tests/corpus/tasks, see its MANIFEST.json): spec-kit
tasks.md, spec-workflow (Kiro-style) numbered tasks and Taskmaster tasks.json files. The expected
numbers come from simple independent readings of each file (checkbox lines with an id, headings
with an id, Taskmaster statuses), not from the parser; the dependency pairs from the files' own
``(depends on T…)`` phrases and from consecutive tasks without ``[P]`` in one section."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planfleet.planner import PlanningError, formats, load_checked, markdown

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "tasks"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text())
_FENCE = re.compile(r"^\s*(```|~~~)")
#: what looks like a task: a checkbox line, or a heading that starts with a T-id
_LOOKS = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+\[[ xX~/-]?\]|^#{1,6}\s+[*_`\[]*T\d")


def _name(entry: dict[str, object]) -> str:
    return "tasks.json" if str(entry["file"]).endswith(".json") else "tasks.md"


def _ancestors(deps: dict[str, set[str]], task: str) -> set[str]:
    seen: set[str] = set()
    todo = [task]
    while todo:
        for d in deps.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_the_corpus_is_what_the_issue_asks_for() -> None:
    md = [e for e in MANIFEST if e["format"] in ("tasks.md", "kiro")]
    assert len(md) >= 40 and len({e["repo"] for e in md}) >= 20
    assert any(e["format"] == "taskmaster" for e in MANIFEST)
    for e in MANIFEST:
        assert (CORPUS / e["licence_file"]).is_file(), e["repo"]
        assert e["licence"] in ("MIT", "Apache-2.0")


@pytest.mark.parametrize("entry", MANIFEST, ids=[str(e["file"])[:60] for e in MANIFEST])
def test_corpus_file(entry: dict[str, object]) -> None:
    data = (CORPUS / str(entry["file"])).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    task_list, problems = formats.parse(data, _name(entry))
    expected_error = entry.get("expected_error")
    if expected_error:
        assert expected_error in {p.code for p in problems}
        if expected_error == "empty":
            (p,) = problems
            assert p.message == f"every task is already done ({entry['done_tasks']} done)"
        return
    assert problems == []
    assert task_list is not None and task_list.format == entry["format"]
    assert len(task_list.tasks) == entry["open_tasks"]
    load_checked(data, _name(entry))  # the graph is sound too: no unknown ids, no cycles
    deps = {t.id: set(t.depends_on) for t in task_list.tasks}
    for later, earlier in entry["pairs"]:  # type: ignore[attr-defined]
        assert earlier in _ancestors(deps, later), (later, earlier)


MARKDOWN = [e for e in MANIFEST if _name(e) == "tasks.md"]


@pytest.mark.parametrize("entry", MARKDOWN, ids=[str(e["file"])[:60] for e in MARKDOWN])
def test_every_line_that_looks_like_a_task_is_accounted_for(entry: dict[str, object]) -> None:
    text = (CORPUS / str(entry["file"])).read_bytes().decode("utf-8-sig")
    _accounted(text)


def _accounted(text: str) -> None:
    """Every line outside code fences that looks like a task is a task (open or done), a line
    of a task's body, or a line a warning names."""
    sc = markdown.scan(text)
    built = markdown.build(sc)
    if not any(not i.done for i in sc.items):
        # nothing to plan: the whole file is refused with a named error
        with pytest.raises(PlanningError) as info:
            load_checked(text.encode(), "tasks.md")
        codes = {p.code for p in info.value.problems}
        assert codes & {"empty", "unknown_format", "duplicate_id"}, codes
        return
    tasks = {i.line for i in sc.items}
    warned: set[int] = set(sc.unread)
    for w in built.warnings:
        if w.code == "not_a_task" and w.line is not None:
            warned.add(w.line)
    fence = False
    for n, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fence = not fence
            continue
        if fence or not _LOOKS.match(line):
            continue
        assert n in tasks or n in sc.body or n in warned, f"line {n} dropped: {line!r}"


_DECOR = st.sampled_from(["", "**", "`"])
_ID = st.builds(lambda n, sub: f"T{n:03d}{sub}", st.integers(1, 60),
                st.sampled_from(["", "", "a", ".1", ".2", "b"]))
_MARKERS = st.lists(st.sampled_from(["[P]", "[US1]", "[US2]", "[P:3.1]", "(P)", "[Story]"]),
                    max_size=3)
_TAIL = st.sampled_from(["Do it", "Write tests in src/x.py [P]", "Wire it (depends on T001)",
                         "(Depends on: T002) fix", "_(depends on T001-T003)_", "After T004 go",
                         "Blocked by T002"])


@st.composite
def _line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["task", "task", "done", "heading", "bad", "plain", "nested",
                                 "text", "phase"]))
    decor = draw(_DECOR)
    task_id = draw(_ID)
    markers = " ".join(draw(_MARKERS))
    tail = draw(_TAIL)
    if kind == "task":
        return f"- [ ] {decor}{task_id}{decor} {markers} {tail}"
    if kind == "done":
        return f"- [x] {decor}{task_id}{decor} {tail}"
    if kind == "heading":
        return f"### {task_id}: {tail}"
    if kind == "bad":
        return f"- [ ] {draw(st.sampled_from(['TXXX', 'T-001', 'TBD']))} {tail}"
    if kind == "plain":
        return f"- [ ] {tail}"
    if kind == "nested":
        return f"  - [ ] {tail}"
    if kind == "phase":
        return f"## Phase {draw(st.integers(1, 5))}: User Story {draw(st.integers(1, 3))}"
    return tail


@settings(max_examples=300, deadline=None)
@given(st.lists(_line(), min_size=1, max_size=30))
def test_generated_files_drop_nothing_silently(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    _accounted(text)
    try:
        load_checked(text.encode(), "tasks.md")
    except PlanningError as exc:
        # refusals are named problems, never a traceback
        assert exc.problems and all(p.code and p.message for p in exc.problems)
