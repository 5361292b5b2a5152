"""An input's text with its problems beside the lines they point to."""

from __future__ import annotations

from planfleet.api import listing

DOC = b"tasks:\n  - id: A\n    depends_on: [B]\n  - id: B\n    depends_on: [A]\n"


def test_each_problem_is_on_its_line_and_a_lineless_one_apart() -> None:
    got = listing.annotate(DOC, [{"code": "cycle", "message": "dependency cycle", "line": 2},
                                 {"code": "bad", "message": "somewhere"}],
                           [{"code": "guess", "message": "read with a guess", "line": 4}])
    (run,) = got.runs
    assert [line.number for line in run] == [1, 2, 3, 4, 5]
    assert run[1].text == "  - id: A"
    assert [(n.kind, n.code) for n in run[1].notes] == [("problem", "cycle")]
    assert [(n.kind, n.code) for n in run[3].notes] == [("warning", "guess")]
    assert [n.message for n in got.unplaced] == ["somewhere"]


def test_a_line_past_the_end_is_not_placed() -> None:
    got = listing.annotate(DOC, [{"code": "x", "message": "m", "line": 99}])
    assert [n.code for n in got.unplaced] == ["x"]


def test_a_long_file_shows_the_lines_around_its_problems() -> None:
    content = "".join(f"line {n}\n" for n in range(1, 1001)).encode()
    got = listing.annotate(content, [{"code": "a", "message": "m", "line": 10},
                                     {"code": "b", "message": "m", "line": 14},
                                     {"code": "c", "message": "m", "line": 900}],
                           whole=100, context=2)
    assert [[line.number for line in run] for run in got.runs] == [
        [8, 9, 10, 11, 12, 13, 14, 15, 16], [898, 899, 900, 901, 902]]


def test_lines_are_counted_as_the_planner_counts_them() -> None:
    assert listing.lines_of(b"\xef\xbb\xbfa\r\nb\n\nc") == ["a", "b", "", "c"]
    assert listing.lines_of(b"a\xff\n") == ["a\ufffd"]
    assert listing.lines_of(b"a\x0cb\n") == ["a\x0cb"]  # a form feed is no line break


def test_a_problem_about_a_task_of_a_yaml_file_goes_beside_that_task() -> None:
    # the planner names the task of a cycle in a YAML file, not a line
    content = b"project: P\ntasks:\n  - id: A\n    depends_on: [B]\n  - {id: B, depends_on: [A]}\n"
    assert listing.task_lines(content) == {"A": 3, "B": 5}
    got = listing.annotate(content, [{"code": "cycle", "message": "dependency cycle",
                                      "task": "A"},
                                     {"code": "x", "message": "m", "task": "Z"}])
    (run,) = got.runs
    assert [(n.code, n.line) for n in run[2].notes] == [("cycle", 3)]
    assert [n.task for n in got.unplaced] == ["Z"]


def test_task_lines_of_json_a_bare_list_and_other_files() -> None:
    assert listing.task_lines(b'{"tasks": [\n {"id": "A"},\n {"id": "B"}\n]}') == {"A": 2, "B": 3}
    assert listing.task_lines(b"- id: A\n- id: B\n") == {"A": 1, "B": 2}
    assert listing.task_lines(b"## Phase 1\n- [ ] T001 One\n") == {}
    assert listing.task_lines(b"a: [\n") == {}
    assert listing.task_lines(b"&a [*a]") == {}
