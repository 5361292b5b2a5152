"""Untrusted task files: strings Postgres cannot store, script paths that would steer the
Windmill token, ids that would leave their URL, and what a file may ask of the fleet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planfleet import script_paths
from planfleet.planner import Limits, PlanningError, Problem, load_checked, plan_bytes
from planfleet.workers import poison


def problems(doc: object, *, limits: Limits | None = None) -> list[Problem]:
    with pytest.raises(PlanningError) as info:
        load_checked(json.dumps(doc).encode(), "t.json", limits=limits)
    return info.value.problems


def where(found: list[Problem]) -> set[tuple[str, str | None, str | None]]:
    return {(p.code, p.task, p.field) for p in found}


# -- strings Postgres cannot store (item 9) ------------------------------------------------------


def test_a_nul_in_a_title_is_refused_with_the_field_named() -> None:
    found = problems({"tasks": [{"id": "A", "title": "bad\u0000title"}]})
    assert where(found) == {("bad_field", "A", "title")}
    assert "NUL" in found[0].message


def test_a_nul_in_a_summary_or_project_is_refused() -> None:
    found = problems({"project": "P\u0000", "tasks": [{"id": "A", "summary": "x\u0000"}]})
    assert {p.field for p in found} == {"project", "summary"}


def test_a_title_too_long_is_refused() -> None:
    found = problems({"tasks": [{"id": "A", "title": "t" * 5000}]})
    assert where(found) == {("bad_field", "A", "title")}
    assert "5000 characters" in found[0].message


@pytest.mark.parametrize(
    "args",
    [{"a": "x\u0000y"}, {"k\u0000": 1}, {"a": [{"b": "\u0000"}]}, {"a": float("nan")},
     {"a": float("inf")}],
)
def test_args_that_postgres_cannot_store_are_refused(args: dict[str, object]) -> None:
    content = json.dumps({"tasks": [{"id": "A", "args": args}]}, allow_nan=True).encode()
    with pytest.raises(PlanningError) as info:
        load_checked(content, "t.json")
    assert where(info.value.problems) == {("bad_field", "A", "args")}


def test_args_nested_too_deep_are_refused() -> None:
    args: dict[str, object] = {}
    inner = args
    for _ in range(40):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    found = problems({"tasks": [{"id": "A", "args": args}]})
    assert "nested" in found[0].message


def test_a_script_name_of_5000_characters_is_refused_at_parse_time() -> None:
    found = problems({"tasks": [{"id": "A", "script": "f/x/" + "a" * 5000}]})
    assert where(found) == {("bad_script", "A", "script")}
    assert "5004 characters" in found[0].message


def test_a_nul_in_a_script_name_is_refused() -> None:
    found = problems({"tasks": [{"id": "A", "script": "f/x/a\u0000b"}]})
    assert where(found) == {("bad_script", "A", "script")}


# -- script paths (item 4) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["f/../../scripts/create", "u/admin/../../variables/create", "f/a/..", "../../../x",
     "f/a/b?x=1", "f/a/b#frag", "f/a/b%2F..", "f//b", "f/a/", "/f/a/b", "h/a/b", "f/a",
     "f/a/b c", "f/a/<img src=x onerror=alert(1)>", "f/a/é"],
)
def test_script_paths_outside_windmills_grammar_are_refused(path: str) -> None:
    assert script_paths.problem(path) is not None
    found = problems({"qa": path, "solvers": {"s": {"script": path, "qa": path}},
                      "tasks": [{"id": "A", "script": path, "solver": "s"}]})
    assert where(found) == {("bad_script", None, "qa"), ("bad_script", None, "solvers.s.script"),
                            ("bad_script", None, "solvers.s.qa"), ("bad_script", "A", "script")}


@pytest.mark.parametrize("path", ["f/planner/solver_dispatch", "u/alice/my-script_2",
                                  "f/a/b/c/d"])
def test_script_paths_in_windmills_grammar_are_accepted(path: str) -> None:
    assert script_paths.check(path) == path


def test_the_allow_list_refuses_other_scripts_and_names_the_field() -> None:
    limits = Limits(allowed_scripts=("f/planner/*", "u/alice/tool"))
    doc = {"qa": "f/other/qa", "solvers": {"s": {"script": "f/other/run"}},
           "tasks": [{"id": "A", "script": "u/bob/steal"}, {"id": "B", "solver": "s"},
                     {"id": "C", "script": "u/alice/tool"}, {"id": "D"}]}
    found = problems(doc, limits=limits)
    assert where(found) == {("script_not_allowed", None, "qa"),
                            ("script_not_allowed", None, "solvers.s.script"),
                            ("script_not_allowed", "A", "script")}
    assert "PLANFLEET_ALLOWED_SCRIPTS" in found[0].message


def test_the_default_script_must_be_allowed_when_a_task_uses_it() -> None:
    found = problems({"tasks": [{"id": "A"}]}, limits=Limits(allowed_scripts=("f/mine/*",)))
    assert where(found) == {("script_not_allowed", None, "script")}
    ok = {"tasks": [{"id": "A", "script": "f/mine/x"}]}
    assert load_checked(json.dumps(ok).encode(), "t.json",
                        limits=Limits(allowed_scripts=("f/mine/*",)))


def test_the_default_allow_list_is_the_scripts_folder(tmp_path: Path) -> None:
    (tmp_path / "f" / "team").mkdir(parents=True)
    (tmp_path / "f" / "team" / "run.py").write_text("def main(): pass\n")
    (tmp_path / "u" / "al").mkdir(parents=True)
    (tmp_path / "u" / "al" / "x.py").write_text("def main(): pass\n")
    patterns = script_paths.default_patterns(tmp_path)
    assert set(patterns) == {"f/team/run", "u/al/x", "f/planner/solver_dispatch"}
    assert script_paths.allowed("f/team/run", patterns)
    assert not script_paths.allowed("f/team/other", patterns)
    assert script_paths.parse_patterns("f/a/*, u/b/c  f/d/e") == ("f/a/*", "u/b/c", "f/d/e")


# -- task ids and URLs (item 12) ---------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["z/../../../3/steps/victim", "a/b", "/"])
def test_a_task_id_with_a_slash_is_refused(task_id: str) -> None:
    found = problems({"tasks": [{"id": task_id}]})
    assert [(p.code, p.field) for p in found] == [("bad_id", "id")]
    assert "'/'" in found[0].message


def test_a_dependency_with_a_slash_is_refused() -> None:
    found = problems({"tasks": [{"id": "A", "depends_on": ["x/y"]}]})
    assert where(found) == {("bad_field", "A", "depends_on")}


# -- fleet limits (item 10) ----------------------------------------------------------------------


def test_max_parallel_over_the_fleet_limit_is_refused() -> None:
    doc = {"max_parallel": 150, "tasks": [{"id": f"T{i}"} for i in range(150)]}
    found = problems(doc, limits=Limits(max_parallel=64))
    assert where(found) == {("over_limit", None, "max_parallel")}
    assert "150 is over the fleet's limit of 64" in found[0].message
    doc["max_parallel"] = 64
    assert load_checked(json.dumps(doc).encode(), "t.json", limits=Limits(max_parallel=64))


def test_a_step_timeout_over_the_fleet_limit_is_refused() -> None:
    doc = {"tasks": [{"id": "A", "timeout": 1e9}, {"id": "B", "timeout": "2h"}]}
    found = problems(doc, limits=Limits(timeout=86400))
    assert where(found) == {("over_limit", "A", "timeout")}
    assert "1e+09 s is over the fleet's limit of 86400 s" in found[0].message


def test_limit_problems_come_with_the_others() -> None:
    doc = {"max_parallel": 500, "tasks": [{"id": "A", "title": "\u0000"}]}
    found = problems(doc, limits=Limits(max_parallel=10))
    assert {p.field for p in found} == {"max_parallel", "title"}


def test_without_limits_the_planner_plans_as_before() -> None:
    assert plan_bytes(json.dumps({"max_parallel": 150, "tasks": [{"id": "A"}]}).encode(),
                      "t.json").max_parallel == 150


# -- the poison-pill rule (item 9) ---------------------------------------------------------------


def test_an_unexpected_error_is_retried_then_fails_with_its_message() -> None:
    exc = RuntimeError("boom")
    assert not poison.after_error(exc, 1, 3).fail
    assert not poison.after_error(exc, 2, 3).fail
    verdict = poison.after_error(exc, 3, 3)
    assert verdict.fail and "RuntimeError: boom" in verdict.error and "3 times" in verdict.error


def test_transient_faults_are_never_poison() -> None:
    from planfleet import exceptions

    assert not poison.after_error(exceptions.DatabaseUnavailable("x"), 99, 3).fail
    assert not poison.after_error(exceptions.QueueUnavailable("x"), 99, 3).fail
    assert not poison.after_error(exceptions.InvalidTransition("taken over"), 99, 3).fail


def test_a_job_that_never_ends_is_given_up_after_its_margin() -> None:
    assert not poison.before_start(9, 3).fail
    verdict = poison.before_start(10, 3)
    assert verdict.fail and "started 9 times" in verdict.error


def test_a_poison_message_is_storable_and_bounded() -> None:
    verdict = poison.after_error(ValueError("a\u0000b" + "x" * 5000), 3, 3)
    assert "\u0000" not in verdict.error and len(verdict.error) < 2100


@pytest.mark.parametrize("name", ["bad\u0000name", "a/b", "x" * 300])
def test_a_solver_name_that_cannot_be_stored_or_named_in_a_url_is_refused(name: str) -> None:
    found = problems({"solvers": {name: {"capacity": 1}}, "tasks": [{"id": "A"}]})
    assert [(p.code, p.field) for p in found] == [("bad_field", "solvers")]
    assert found[0].message.startswith("solver name ")
