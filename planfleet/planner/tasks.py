"""The task list the planner works on: pydantic models and the field rules every format shares."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from planfleet import defaults, durations, script_paths
from planfleet.planner.errors import Problem

#: Longest task id accepted.
MAX_ID_LENGTH = 200
#: Largest estimate accepted, in minutes (about 19 years).
MAX_ESTIMATE = 10_000_000.0
#: Longest title (and project name) accepted, in characters.
MAX_TITLE_LENGTH = 2000
#: Largest ``args`` of one task accepted, in characters of JSON.
MAX_ARGS_LENGTH = 256 * 1024
#: Deepest nesting of a task's ``args``.
MAX_ARGS_DEPTH = 32
_ID_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
PRIORITY_ALIASES = {
    **defaults.PRIORITIES,
    "show-stopper": 100,
    "blocker": 100,
    "urgent": 100,
    "major": 75,
    "medium": 50,
    "minor": 25,
    "trivial": 0,
}


class SolverSpec(BaseModel):
    """A solver: the Windmill script its tasks run and how many may run at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    script: str | None = None
    capacity: int | None = Field(None, ge=1)
    qa: str | None = None


class Policy(BaseModel):
    """A task file's own policy: for its steps (what it leaves out is the fleet's), and for
    how a new version of the file revises its plan (planfleet.planner.revision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_attempts: int | None = Field(None, ge=1, le=100)
    retry_base: float | None = Field(None, ge=0, le=86_400)
    retry_cap: float | None = Field(None, ge=0, le=7 * 86_400)
    timeout_factor: float | None = Field(None, ge=1, le=100)
    on_exhausted: Literal["escalate", "fail"] | None = None
    #: a new version of the file changed a running task: cancel its job and run the new
    #: definition (``rerun``, the default), or let the job finish, then run the new one
    on_change: Literal["rerun", "finish"] | None = None
    #: a new version of the file removed a running task (or marked it done): cancel its job,
    #: or let it finish (``finish``, the default)
    on_removed: Literal["cancel", "finish"] | None = None
    #: a completed task runs again: its completed dependents, marked stale, run again too
    #: (default false: they are kept, marked stale)
    cascade: StrictBool | None = None


class TaskSpec(BaseModel):
    """One task, normalised (estimate in minutes, priority a number, solvers a list)."""

    model_config = ConfigDict(frozen=True)
    id: str
    title: str = ""
    estimate: float = defaults.DEFAULT_ESTIMATE
    priority: int = defaults.DEFAULT_PRIORITY
    depends_on: tuple[str, ...] = ()
    solver: tuple[str, ...] = ()
    parallel: bool = True
    script: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    #: overrides of the build's step policy for this task (None: the fleet's defaults)
    max_attempts: int | None = None
    timeout: float | None = None
    line: int | None = None


class TaskList(BaseModel):
    """A parsed, field-checked task list (its graph is checked by the planner)."""

    model_config = ConfigDict(frozen=True)
    format: str
    project: str | None = None
    max_parallel: int | None = None
    solvers: dict[str, SolverSpec] = Field(default_factory=dict)
    #: the quality check every task's output goes through (a solver's own ``qa`` wins)
    qa: str | None = None
    policy: Policy = Field(default_factory=Policy)
    tasks: tuple[TaskSpec, ...] = ()
    #: what was read but not planned, or read with a guess (the input shows them)
    warnings: tuple[Problem, ...] = ()
    #: the source key the file declares (``key:…``, ``youtrack:…``; see planfleet.sources)
    source: str | None = None
    #: ids of tasks the file lists as done (``[x]`` in tasks.md, done in Taskmaster, resolved
    #: in YouTrack): left out of the plan, a dependency on one is met
    done_in_source: tuple[str, ...] = ()


def parse_estimate(value: Any) -> float:
    """Minutes of **working time** from a number (minutes) or a duration such as ``45m``,
    ``2h``, ``1h30m``, ``1d`` (8 hours), ``1w`` (5 days); see :mod:`planfleet.durations`."""
    minutes = durations.parse_work_minutes(value, "estimate")
    if minutes > MAX_ESTIMATE:
        raise ValueError(f"estimate {value!r} is over the limit of {MAX_ESTIMATE:.0f} minutes")
    return minutes


def parse_priority(value: Any) -> int:
    """A priority name (critical, high, normal, low, idle, …) or an integer."""
    if isinstance(value, bool):
        raise ValueError(f"priority must be a name or an integer, got {value!r}")
    if isinstance(value, int):
        if not -1_000_000 <= value <= 1_000_000:
            raise ValueError(f"priority {value} is out of range (-1000000..1000000)")
        return value
    if isinstance(value, float) and value.is_integer():
        return parse_priority(int(value))
    if isinstance(value, str):
        key = value.strip().lower()
        if key in PRIORITY_ALIASES:
            return PRIORITY_ALIASES[key]
        if re.fullmatch(r"-?\d+", key):
            return parse_priority(int(key))
        names = ", ".join(defaults.PRIORITIES)
        raise ValueError(f"unknown priority {value!r} (use {names}, or an integer)")
    raise ValueError(f"priority must be a name or an integer, got {type(value).__name__}")


def check_id(value: Any) -> str:
    """A task id: a non-empty string (or integer) without control characters."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"id must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError("id is empty")
    if len(text) > MAX_ID_LENGTH:
        raise ValueError(f"id is {len(text)} characters long (at most {MAX_ID_LENGTH})")
    if _ID_FORBIDDEN.search(text):
        raise ValueError("id contains control characters")
    if "/" in text:
        # an id names its step in URLs (/api/plans/{id}/steps/{task}): a '/' would leave it
        raise ValueError(f"id {text[:80]!r} contains '/' (not allowed: ids are URL segments)")
    return text


def check_text(value: Any, *, limit: int = MAX_TITLE_LENGTH) -> str:
    """Free text (a title, a project): no NUL character, at most ``limit`` characters."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"must be text, got {type(value).__name__}")
    text = str(value)
    if "\x00" in text:
        raise ValueError("contains a NUL character")
    if len(text) > limit:
        raise ValueError(f"is {len(text)} characters long (at most {limit})")
    return text


def check_args(value: Any) -> dict[str, Any]:
    """A task's ``args``: a mapping that JSON and Postgres can store (no NUL character in a
    key or a string, finite numbers, bounded nesting and size)."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping, got {type(value).__name__}")

    def walk(v: Any, where: str, depth: int) -> None:
        if depth > MAX_ARGS_DEPTH:
            raise ValueError(f"{where} is nested over {MAX_ARGS_DEPTH} levels deep")
        if isinstance(v, str):
            if "\x00" in v:
                raise ValueError(f"{where} contains a NUL character")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"{where} is {v!r}, not a finite number")
        elif isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str | int) or isinstance(k, bool):
                    raise ValueError(f"{where} has a key of type {type(k).__name__}")
                if "\x00" in str(k):
                    raise ValueError(f"{where} has a key with a NUL character")
                walk(item, f"{where}.{k}", depth + 1)
        elif isinstance(v, list | tuple):
            for i, item in enumerate(v):
                walk(item, f"{where}[{i}]", depth + 1)
        elif v is not None and not isinstance(v, bool | int):
            raise ValueError(f"{where} is a {type(v).__name__}, not a JSON value")

    walk(value, "args", 0)
    size = len(json.dumps(value, default=str))
    if size > MAX_ARGS_LENGTH:
        raise ValueError(f"args are {size} characters of JSON (at most {MAX_ARGS_LENGTH})")
    return value


def _id_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list of task ids, got {type(value).__name__}")
    return [check_id(v) for v in value]


def build_task(raw: Any, index: int, problems: list[Problem], *, line: int | None = None) -> TaskSpec | None:
    """Check one raw task mapping; problems are appended, None when it is unusable."""
    if not isinstance(raw, dict):
        problems.append(
            Problem("bad_field", f"task #{index + 1} must be a mapping, got {type(raw).__name__}",
                    line=line)
        )
        return None
    try:
        task_id = check_id(raw.get("id"))
    except ValueError as exc:
        problems.append(Problem("bad_id", f"task #{index + 1}: {exc}", field="id", line=line))
        return None
    fields: dict[str, Any] = {"id": task_id, "line": line}

    def check(name: str, fn: Any) -> None:
        if name in raw and raw[name] is not None:
            try:
                fields[name] = fn(raw[name])
            except ValueError as exc:
                code = {"estimate": "bad_estimate", "priority": "bad_priority",
                        "script": "bad_script"}.get(name, "bad_field")
                problems.append(Problem(code, str(exc), task=task_id, field=name, line=line))

    def boolean(v: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError(f"must be true or false, got {v!r}")
        return v

    check("title", check_text)
    check("estimate", parse_estimate)
    check("priority", parse_priority)
    check("depends_on", lambda v: tuple(_id_list(v, "depends_on")))
    check("solver", lambda v: tuple(_id_list(v, "solver")))
    check("parallel", boolean)
    check("script", script_paths.check)
    check("args", check_args)

    def attempts(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100:
            raise ValueError(f"must be a whole number from 1 to 100, got {v!r}")
        return v

    def seconds(v: Any) -> float:
        # wall-clock time: a day is 24 hours; a bare number is seconds
        try:
            value = durations.parse_wall_seconds(v)
        except ValueError:
            value = 0.0
        if not value > 0:
            raise ValueError(f"must be seconds > 0 or a wall-clock duration like '30m' or "
                             f"'1d' (24 h), got {v!r}")
        return value

    check("max_attempts", attempts)
    check("timeout", seconds)
    if "title" not in fields and raw.get("title") is None and raw.get("summary") is not None:
        check("summary", check_text)
        if "summary" in fields:
            fields["title"] = fields.pop("summary")
    known = {"id", "title", "summary", "estimate", "priority", "depends_on", "solver", "parallel",
             "script", "args", "description", "max_attempts", "timeout"}
    for key in raw:
        if key not in known:
            problems.append(
                Problem("bad_field", f"unknown field {key!r}", task=task_id, field=str(key),
                        line=line)
            )
    return TaskSpec(**fields)


def build_solvers(raw: Any, problems: list[Problem]) -> dict[str, SolverSpec]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(Problem("bad_field", "solvers must be a mapping", field="solvers"))
        return {}
    out: dict[str, SolverSpec] = {}
    for name, spec in raw.items():
        try:
            check_id(name)
        except ValueError as exc:
            problems.append(Problem("bad_field", f"solver name {str(exc).removeprefix('id ')}",
                                    field="solvers"))
            continue
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            problems.append(
                Problem("bad_field", f"solver {name!r} must be a mapping", field="solvers")
            )
            continue
        cap = spec.get("capacity")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            problems.append(
                Problem("bad_capacity", f"solver {name!r}: capacity must be an integer >= 1, "
                        f"got {cap!r}", field=f"solvers.{name}.capacity")
            )
            continue
        bad = False
        for key in ("script", "qa"):
            why = None if spec.get(key) is None else script_paths.problem(spec.get(key))
            if why is not None:
                problems.append(Problem("bad_script", f"solver {name!r}: {why}",
                                        field=f"solvers.{name}.{key}"))
                bad = True
        if bad:
            continue
        try:
            out[str(name)] = SolverSpec(**spec)
        except Exception as exc:  # pydantic.ValidationError
            problems.append(
                Problem("bad_field", f"solver {name!r}: {_first_error(exc)}", field="solvers")
            )
    return out


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        loc = ".".join(str(x) for x in e.get("loc", ()))
        return f"{loc}: {e.get('msg')}" if loc else str(e.get("msg"))
    return str(exc)


def check_max_parallel(value: Any, problems: list[Problem]) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        problems.append(
            Problem("bad_field", f"max_parallel must be an integer >= 1, got {value!r}",
                    field="max_parallel")
        )
        return None
    return value


def build_policy(raw: Any, problems: list[Problem]) -> Policy:
    """The ``policy`` mapping of a task file, or the fleet's when absent or wrong."""
    if raw is None:
        return Policy()
    if not isinstance(raw, dict):
        problems.append(Problem("bad_field", "policy must be a mapping (max_attempts, "
                                "retry_base, retry_cap, timeout_factor, on_exhausted, "
                                "on_change, on_removed, cascade)", field="policy"))
        return Policy()
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(x) for x in err["loc"])
            problems.append(Problem("bad_field", f"policy.{where}: {err['msg']}",
                                    field=f"policy.{where}"))
        return Policy()
