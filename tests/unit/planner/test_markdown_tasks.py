"""Markdown task lists: every convention seen in real spec-kit tasks.md files, Kiro-style
numbered tasks, and what is never dropped silently."""

from __future__ import annotations

import pytest

from planfleet.planner import PlanningError, load, load_checked, plan_bytes


def deps_of(text: str) -> dict[str, set[str]]:
    return {t.id: set(t.depends_on) for t in load(text.encode(), "tasks.md").tasks}


def warnings_of(text: str) -> list[tuple[str, int | None]]:
    return [(w.code, w.line) for w in load(text.encode(), "tasks.md").warnings]


def test_decorated_ids() -> None:
    doc = "## Phase 1\n- [ ] **T001** Create it\n- [ ] `T002` Then this\n- [ ] __T003__ Last\n"
    tl = load(doc.encode(), "tasks.md")
    assert [t.id for t in tl.tasks] == ["T001", "T002", "T003"]
    assert [t.title for t in tl.tasks] == ["Create it", "Then this", "Last"]
    assert deps_of(doc)["T002"] == {"T001"}


def test_heading_tasks_with_bodies() -> None:
    doc = """## Phase 1: Setup

### T001: Create network
Some words.

### T002 [P] - Create volume
**Depends**: T001

#### T003 Configure service
**Dependencies**: T001 (network must exist), T002

### T004: Old work
Status: done

### T005: Older work
- [x] done

### T006 [P] - Use them
**Dependencies**: T004, T005
"""
    tl = load(doc.encode(), "tasks.md")
    by_id = {t.id: t for t in tl.tasks}
    assert set(by_id) == {"T001", "T002", "T003", "T006"}  # T004 and T005 are done
    assert by_id["T002"].title == "Create volume" and by_id["T002"].line == 6
    assert {"T001"} <= set(by_id["T002"].depends_on)
    assert {"T001", "T002"} <= set(by_id["T003"].depends_on)
    assert "T004" not in by_id["T006"].depends_on  # a done dependency is met


def test_sub_ids_and_suffixed_ids_are_distinct_tasks() -> None:
    doc = """## Phase 1
- [ ] T005 Base
- [ ] T005.1 Part one
- [ ] T008 Next
- [ ] T008.1 [P] Detail (depends on T005.1)
- [ ] T053 Thing
- [ ] T053a [P] Other thing (depends on T008.1)
- [ ] T058-test [P] Its test (depends on T053a)
"""
    deps = deps_of(doc)
    assert list(deps) == ["T005", "T005.1", "T008", "T008.1", "T053", "T053a", "T058-test"]
    assert "T005.1" in deps["T008.1"] and "T008.1" in deps["T053a"]
    assert "T053a" in deps["T058-test"]


@pytest.mark.parametrize("line", [
    "- [ ] T002 [P] Write the parser in src/p.py",
    "- [ ] T002 [US1] [P] Write the parser in src/p.py",
    "- [ ] T002 [US1] Write the parser in src/p.py [P]",
    "- [ ] T002 [P:3.1] Write the parser in src/p.py",
    "- [ ] T002 (P) Write the parser in src/p.py",
    "- [ ] T002[P] Write the parser in src/p.py",
])
def test_parallel_marks_anywhere(line: str) -> None:
    doc = f"## Phase 1\n- [ ] T001 Setup\n- [ ] T010 [P] Lint\n{line}\n- [ ] T003 Join\n"
    deps = deps_of(doc)
    assert deps["T002"] == {"T001"}  # parallel with T010: both wait only for T001
    assert deps["T003"] == {"T001", "T010", "T002"}
    title = load(doc.encode(), "tasks.md").tasks[2].title
    assert title == "Write the parser in src/p.py"


@pytest.mark.parametrize(("phrase", "expected"), [
    ("(depends on T001)", {"T001"}),
    ("(Depends on: T001)", {"T001"}),
    ("_(depends on T001)_", {"T001"}),
    ("Blocked by T001", {"T001"}),
    ("After T001 is merged", {"T001"}),
    ("(depends on T001, T003)", {"T001", "T003"}),
    ("(depends on T001-T003)", {"T001", "T002", "T003"}),
    ("(depends on T001–T003)", {"T001", "T002", "T003"}),
    ("(depends on T002 – T003)", {"T002", "T003"}),
    ("(depends on T001..T003)", {"T001", "T002", "T003"}),
])
def test_dependency_phrases_lists_and_ranges(phrase: str, expected: set[str]) -> None:
    doc = (f"## Phase 1\n- [ ] T001 [P] A\n- [ ] T002 [P] B\n- [ ] T003 [P] C\n"
           f"## Phase 2\n- [ ] T009 [P] Z\n- [ ] T010 [P] Do it {phrase}\n")
    deps = deps_of(doc)
    assert expected <= deps["T010"]
    assert deps["T009"] == {"T001", "T002", "T003"}  # the phase order, nothing more


def test_phrases_on_continuation_lines_and_sub_bullets() -> None:
    doc = """## Phase 1
- [ ] T001 [P] A
- [ ] T002 [P] B
- [ ] T003 [P] C
- [ ] T004 [P] D
- [ ] T005 [P] E
- [ ] T006 [P] F
## Phase 2
- [ ] T010 [P] Wrapped text that goes on
  and on (depends on T001)
- [ ] T011 [P] With sub-bullets
  - **Depends on**: T002
  - depends on T005, T006
- [ ] T012 [P] Lazy continuation
after T003 only
"""
    deps = deps_of(doc)
    assert "T001" in deps["T010"] and {"T002", "T005", "T006"} <= deps["T011"]
    assert "T003" in deps["T012"]


def test_a_dependencies_section() -> None:
    doc = """## Phase 1: Setup
- [ ] T009 Schema
- [ ] T010 [P] Models
- [ ] T011 [P] Service
## Phase 2: Build
- [ ] T014 [P] One
- [ ] T015 [P] Two
- [ ] T016 [P] Three
- [ ] T017 [P] Four
## Phase 3: Ship
- [ ] T020 [P] Docs

## Dependencies
- T011 blocks T014–T017
- T010 depends on T009
- T017 → T016 → T015
- Setup (T009-T011) → Build (T014) → Polish → Ship (T020)
- T014 after T017
- Tests (T014) before docs (T020); there are no dependencies on T009 here
"""
    deps = deps_of(doc)
    for t in ("T014", "T015", "T016", "T017"):
        assert "T011" in deps[t]
    assert "T009" in deps["T010"]
    assert "T017" in deps["T016"] and "T016" in deps["T015"] and "T017" in deps["T014"]
    assert "T014" in deps["T020"]
    assert {"T009", "T010", "T011"} <= deps["T014"]


def test_negated_phrases_are_not_dependencies() -> None:
    from planfleet.planner import markdown

    assert markdown.phrases("Can start now - no dependencies on T009") == ([], [])
    assert markdown.phrases("not blocked by T002") == ([], [])
    assert markdown.phrases("blocked by T002") == (["T002"], [])


SPECKIT_STORIES = """# Tasks: Demo

## Phase 1: Setup
- [ ] T001 Create project

## Phase 2: Foundational (Blocking Prerequisites)
- [ ] T002 Schema
- [ ] T003 [P] Auth

## Phase 3: User Story 1 - Login (Priority: P1)
- [ ] T004 [US1] Login model
- [ ] T005 [US1] Login endpoint

## Phase 4: User Story 2 - Profile (Priority: P2)
- [ ] T006 [US2] Profile model
- [ ] T007 [US2] Profile endpoint

## Phase 5: Polish
- [ ] T008 Docs
"""


def test_story_phases_run_in_parallel_after_foundational() -> None:
    deps = deps_of(SPECKIT_STORIES)
    assert deps["T004"] == {"T002", "T003"} and deps["T006"] == {"T002", "T003"}
    assert deps["T008"] == {"T005", "T007"}
    plan = plan_bytes(SPECKIT_STORIES.encode(), "tasks.md")
    assert plan.schedule["T006"].start == plan.schedule["T004"].start  # side by side


def test_phase_dependencies_in_the_file_win_over_the_story_rule() -> None:
    doc = SPECKIT_STORIES + """
## Dependencies & Execution Order
- **Setup (Phase 1)**: No dependencies - can start immediately
- **User Story 2 (P2)**: Can start after Foundational (Phase 2) - depends on User Story 1
- Phase 4 depends on Phase 3
"""
    deps = deps_of(doc)
    assert "T005" in deps["T006"]


def test_a_story_after_another_story() -> None:
    doc = SPECKIT_STORIES + "\n## Dependencies\n- **User Story 2**: can start after User Story 1\n"
    deps = deps_of(doc)
    assert "T005" in deps["T006"] and "T004" in deps["T005"] and "T006" not in deps["T004"]


def test_explicit_dependencies_win_over_the_files_order() -> None:
    # T002 is written before T003 (so would wait for nothing after it), but says it needs T003
    doc = "## Phase 1\n- [ ] T001 A\n- [ ] T002 B (depends on T003)\n- [ ] T003 C\n"
    tl = load(doc.encode(), "tasks.md")
    deps = {t.id: set(t.depends_on) for t in tl.tasks}
    assert "T003" in deps["T002"] and "T002" not in deps["T003"]
    assert [w.code for w in tl.warnings] == ["order_overridden"]
    plan_bytes(doc.encode(), "tasks.md")  # and it plans: no cycle


def test_example_tasks_in_fenced_code_are_not_tasks() -> None:
    doc = "## Phase 1\n- [ ] T001 Real\n```markdown\n- [ ] T002 Example only\n```\n"
    tl = load(doc.encode(), "tasks.md")
    assert [t.id for t in tl.tasks] == ["T001"] and tl.warnings == ()


def test_all_done_is_not_no_tasks_found() -> None:
    with pytest.raises(PlanningError) as info:
        load_checked(b"## Phase 1\n- [x] T001 A\n- [X] T002 B\n### T003: C\nStatus: done\n",
                     "tasks.md")
    (p,) = info.value.problems
    assert (p.code, p.message) == ("empty", "every task is already done (3 done)")


def test_lines_that_cannot_be_read_are_named_warnings() -> None:
    doc = """## Phase 1
- [ ] T001 Real
- [ ] TXXX [P] Placeholder
- [ ] T-002 Dashed id
### TBD: decide later

## Checklist
- [ ] All tests pass
- [ ] Docs updated
"""
    assert warnings_of(doc) == [("not_a_task", 8), ("unreadable_task", 3),
                                ("unreadable_task", 4), ("unreadable_task", 5)]
    assert [t.id for t in load(doc.encode(), "tasks.md").tasks] == ["T001"]


def test_no_tasks_found_says_what_was_seen() -> None:
    with pytest.raises(PlanningError) as info:
        load_checked(b"## Todo\n- [ ] Buy milk\n- [ ] Call Bob\n", "tasks.md")
    assert "2 checkbox lines without a task id" in info.value.problems[0].message


def test_repeated_identical_task_is_a_warning_and_a_different_one_an_error() -> None:
    doc = "## Phase 1\n- [ ] T001 Same\n## Summary\n- [ ] T001 Same\n"
    assert warnings_of(doc) == [("repeated_task", 4)]
    with pytest.raises(PlanningError) as info:
        load_checked(b"## P\n- [ ] T001 One\n- [ ] T001 Other\n", "tasks.md")
    assert [(p.code, p.line) for p in info.value.problems] == [("duplicate_id", 3)]


KIRO = """# Implementation Plan

- [ ] 1. Set up the project
  - Create the folders
  - _Requirements: 1.1, 2.3_

- [ ] 2. Build the data layer
- [x] 2.1 Write the models
  - _Requirements: 1.2_
- [ ] 2.2 Write the repository
- [ ] 2.3 Test the repository (depends on 1)

- [ ] 3. Wire the API
"""


def test_kiro_numbered_tasks() -> None:
    tl = load(KIRO.encode(), "tasks.md")
    assert tl.format == "kiro"
    deps = {t.id: set(t.depends_on) for t in tl.tasks}
    # a parent with sub-tasks is their group, not a task; 2.1 is done; order is the file's
    assert list(deps) == ["1", "2.2", "2.3", "3"]
    assert deps["2.2"] == {"1"} and deps["2.3"] == {"2.2", "1"} and deps["3"] == {"2.3"}


def test_many_contradictions_are_resolved_quickly_and_their_warnings_capped() -> None:
    import time

    n = 5000
    lines = ["## Phase 1"] + [
        f"- [ ] T{i:05d} task (depends on T{i + 2:05d})" if i + 2 <= n else f"- [ ] T{i:05d} task"
        for i in range(1, n + 1)]
    started = time.monotonic()
    tl = load_checked("\n".join(lines).encode(), "tasks.md")
    assert time.monotonic() - started < 10
    deps = {t.id: set(t.depends_on) for t in tl.tasks}
    assert all(f"T{i + 2:05d}" in deps[f"T{i:05d}"] for i in range(1, n - 1))
    assert len(tl.warnings) == 200 and tl.warnings[-1].code == "more_warnings"


def test_a_chain_of_named_steps_with_ids_in_parentheses() -> None:
    doc = """## Phase 1
- [ ] T001 [P] a
- [ ] T002 [P] b
- [ ] T003 [P] c
- [ ] T004 [P] d

## Dependencies
- Setup (T001) → Core (T002-T003) → Stories (all of them)
"""
    deps = deps_of(doc)
    assert deps["T002"] == {"T001"} and deps["T003"] == {"T001"} and deps["T004"] == set()
