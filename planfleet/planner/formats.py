"""Task-list formats: the native JSON/YAML list, a YouTrack issues export, a spec-kit tasks.md.

:func:`load` detects the format from the file name and the content and returns a field-checked
:class:`~planfleet.planner.tasks.TaskList`, or raises
:class:`~planfleet.planner.errors.PlanningError` with every problem found.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from planfleet import script_paths
from planfleet.planner import tasks as t
from planfleet.planner.errors import PlanningError, Problem

#: YAML aliases accepted in one document (guards against "billion laughs" expansion).
MAX_YAML_ALIASES = 100
#: Tasks accepted in one list.
MAX_TASKS = 1_000_000


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents with too many aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (an alias bomb?)")
        return super().compose_node(parent, index)


#: libyaml's safe loader when PyYAML was built with it.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", None)
#: What may be a YAML alias (``*name``); over the limit, the counting loader decides.
_ALIAS = re.compile(r"\*[^\s,\]}*]")


def decode(content: bytes) -> str:
    """UTF-8 text (a BOM is dropped); PlanningError for anything else."""
    if b"\x00" in content[:8192]:
        raise PlanningError([Problem("unknown_format", "binary data, not a task list")])
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlanningError(
            [Problem("encoding", f"not UTF-8 text (invalid byte at offset {exc.start})")]
        ) from exc


_SPECKIT_TASK = re.compile(r"^\s*[-*]\s*\[(?P<done>[ xX])\]\s*(?P<id>T\d+)\b\s*(?P<rest>.*)$")
_SPECKIT_PHASE = re.compile(r"^\s*#{2,6}\s+(?P<title>.+?)\s*$")


def detect(filename: str, text: str) -> str:
    """``json``, ``yaml`` or ``tasks.md`` (YouTrack exports are JSON, told apart later)."""
    name = filename.lower()
    if name.endswith((".md", ".markdown")):
        return "tasks.md"
    if name.endswith(".json"):
        return "json"
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "json"
    if any(_SPECKIT_TASK.match(line) for line in text.splitlines()[:500]):
        return "tasks.md"
    return "yaml"


def _load_structured(kind: str, text: str) -> Any:
    try:
        if kind == "json":
            return json.loads(text)
        if _FAST_LOADER is not None and len(_ALIAS.findall(text)) <= MAX_YAML_ALIASES:
            # libyaml's safe loader: ten times faster; few enough aliases to be harmless
            return yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a safe loader
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError as exc:
        raise PlanningError([Problem("parse_error", f"{kind}: nesting too deep")]) from exc
    except json.JSONDecodeError as exc:
        raise PlanningError(
            [Problem("parse_error", f"invalid JSON: {exc.msg}", line=exc.lineno)]
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanningError([Problem("parse_error", f"invalid YAML: {problem}", line=line)]) from exc


def load(content: bytes, filename: str = "tasks") -> t.TaskList:
    """Parse ``content`` (named ``filename``) into a field-checked task list."""
    text = decode(content)
    if not text.strip():
        raise PlanningError([Problem("empty", "the file is empty")])
    kind = detect(filename, text)
    if kind == "tasks.md":
        return _speckit(text)
    data = _load_structured(kind, text)
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data) and any(
        "idReadable" in x for x in data
    ):
        return _youtrack(data)
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict):
        raise PlanningError(
            [Problem("unknown_format",
                     f"not a task list: expected a mapping with 'tasks' or a list of tasks, "
                     f"got {type(data).__name__}")]
        )
    return _native(data, kind)


def _native(data: dict[str, Any], kind: str) -> t.TaskList:
    problems: list[Problem] = []
    if "tasks" not in data:
        raise PlanningError(
            [Problem("unknown_format", "not a task list: no 'tasks' key "
                     f"(keys: {', '.join(map(str, list(data)[:10]))})")]
        )
    raw_tasks = data["tasks"]
    if not isinstance(raw_tasks, list):
        raise PlanningError(
            [Problem("bad_field", f"'tasks' must be a list, got {type(raw_tasks).__name__}",
                     field="tasks")]
        )
    if len(raw_tasks) > MAX_TASKS:
        raise PlanningError([Problem("too_many", f"{len(raw_tasks)} tasks (at most {MAX_TASKS})")])
    for key in data:
        if key not in ("project", "max_parallel", "solvers", "tasks", "description", "version",
                       "qa", "policy"):
            problems.append(Problem("bad_field", f"unknown top-level field {key!r}", field=str(key)))
    project = data.get("project")
    if project is not None:
        try:
            project = t.check_text(project, limit=t.MAX_ID_LENGTH)
        except ValueError as exc:
            problems.append(Problem("bad_field", f"project {exc}", field="project"))
            project = None
    max_parallel = t.check_max_parallel(data.get("max_parallel"), problems)
    solvers = t.build_solvers(data.get("solvers"), problems)
    qa = data.get("qa")
    why = None if qa is None else script_paths.problem(qa)
    if why is not None:
        problems.append(Problem("bad_script", f"qa: {why}", field="qa"))
        qa = None
    policy = t.build_policy(data.get("policy"), problems)
    built = [t.build_task(raw, i, problems) for i, raw in enumerate(raw_tasks)]
    return _finish(
        kind, problems, [x for x in built if x is not None],
        project=None if project is None else str(project), max_parallel=max_parallel,
        solvers=solvers, qa=qa, policy=policy,
    )


def _finish(kind: str, problems: list[Problem], specs: list[t.TaskSpec], **extra: Any) -> t.TaskList:
    if not specs and not problems:
        problems.append(Problem("empty", "the task list has no tasks"))
    if problems:
        raise _Partial(t.TaskList(format=kind, tasks=tuple(specs), **extra), problems)
    return t.TaskList(format=kind, tasks=tuple(specs), **extra)


class _Partial(PlanningError):
    """Field problems, with what could be read, so that graph problems are found too."""

    def __init__(self, partial: t.TaskList, problems: list[Problem]) -> None:
        super().__init__(problems)
        self.partial = partial


def parse(content: bytes, filename: str = "tasks") -> tuple[t.TaskList | None, list[Problem]]:
    """Like :func:`load`, but returns ``(task list, problems)``: the task list holds every task
    that could be read even when some fields were wrong (None when nothing could be read)."""
    try:
        return load(content, filename), []
    except _Partial as exc:
        return exc.partial, exc.problems
    except PlanningError as exc:
        return None, exc.problems


# -- YouTrack ---------------------------------------------------------------------------------


def _yt_field(issue: dict[str, Any], name: str) -> Any:
    for field in issue.get("customFields") or []:
        if isinstance(field, dict) and str(field.get("name", "")).lower() == name.lower():
            return field.get("value")
    return None


def _yt_links(issue: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(issues this one depends on, issues that depend on this one)."""
    depends: list[dict[str, Any]] = []
    required_for: list[dict[str, Any]] = []
    for link in issue.get("links") or []:
        if not isinstance(link, dict):
            continue
        lt = link.get("linkType") or {}
        direction = str(link.get("direction", "")).upper()
        s2t = str(lt.get("sourceToTarget", "")).lower()
        t2s = str(lt.get("targetToSource", "")).lower()
        name = str(lt.get("name", "")).lower()
        label = s2t if direction == "OUTWARD" else t2s if direction == "INWARD" else ""
        if not label and name.startswith("depend"):
            label = "depends on" if direction == "OUTWARD" else "is required for"
        others = [x for x in link.get("issues") or [] if isinstance(x, dict)]
        if label == "depends on":
            depends += others
        elif label == "is required for":
            required_for += others
    return depends, required_for


def _youtrack(issues: list[dict[str, Any]]) -> t.TaskList:
    problems: list[Problem] = []
    raw: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for i, issue in enumerate(issues):
        task_id = issue.get("idReadable")
        fields: dict[str, Any] = {"id": task_id, "title": issue.get("summary") or ""}
        prio = _yt_field(issue, "Priority")
        if isinstance(prio, dict):
            prio = prio.get("name")
        if prio is not None:
            fields["priority"] = prio
        est = _yt_field(issue, "Estimation")
        if isinstance(est, dict):
            est = est.get("minutes", est.get("presentation"))
        if est is not None:
            fields["estimate"] = est
        fields["args"] = {"issue_id": task_id}
        if isinstance(task_id, str) and task_id in raw:
            problems.append(Problem("duplicate_id", f"issue {task_id} appears twice", task=task_id))
            continue
        raw[str(task_id)] = fields
        order.append(str(task_id))
        fields["_index"] = i
    deps: dict[str, set[str]] = {k: set() for k in raw}
    for issue in issues:
        me = str(issue.get("idReadable"))
        if me not in raw:
            continue
        depends, required_for = _yt_links(issue)
        for other in depends:
            oid = str(other.get("idReadable"))
            if oid in raw:
                deps[me].add(oid)
            elif not other.get("resolved"):
                deps[me].add(oid)  # reported as an unknown dependency by the planner
        for other in required_for:
            oid = str(other.get("idReadable"))
            if oid in raw:
                deps[oid].add(me)
    specs = []
    for key in order:
        fields = raw[key]
        index = fields.pop("_index")
        fields["depends_on"] = sorted(deps[key])
        spec = t.build_task(fields, index, problems)
        if spec is not None:
            specs.append(spec)
    return _finish("youtrack", problems, specs)


# -- spec-kit tasks.md ------------------------------------------------------------------------


def _speckit(text: str) -> t.TaskList:
    """Phases run in order; inside a phase a task without ``[P]`` waits for everything before
    it in the phase, and a ``[P]`` task only for the last task without ``[P]``. Done tasks
    (``[x]``) are left out."""
    problems: list[Problem] = []
    specs: list[t.TaskSpec] = []
    seen: dict[str, int] = {}
    done: set[str] = set()
    gate: list[str] = []  # what the next task waits for
    group: list[str] = []  # [P] tasks since the last sequential one
    phase = ""
    for lineno, line in enumerate(text.splitlines(), start=1):
        head = _SPECKIT_PHASE.match(line)
        if head and not _SPECKIT_TASK.match(line):
            if group or gate:
                gate, group = sorted(set(gate) | set(group)), []
            phase = head.group("title")
            continue
        m = _SPECKIT_TASK.match(line)
        if not m:
            continue
        task_id, rest = m.group("id"), m.group("rest")
        if task_id in seen:
            problems.append(
                Problem("duplicate_id", f"{task_id} is also defined on line {seen[task_id]}",
                        task=task_id, line=lineno)
            )
            continue
        seen[task_id] = lineno
        parallel_mark = bool(re.match(r"^\[P\]", rest))
        if m.group("done") in "xX":
            # a done task is left out; what it waited for still gates the tasks after it
            done.add(task_id)
            if not parallel_mark:
                gate, group = sorted(set(gate) | set(group)), []
            continue
        title = re.sub(r"^\[P\]\s*", "", rest).strip()
        story = re.match(r"^\[(US\d+)\]\s*", title)
        args: dict[str, Any] = {"task_id": task_id, "phase": phase}
        if story:
            args["story"] = story.group(1)
        explicit = re.findall(r"\(depends on ([^)]*)\)", title, flags=re.IGNORECASE)
        extra = [d for chunk in explicit for d in re.findall(r"T\d+", chunk)]
        deps = [d for d in gate if d not in done]
        if not parallel_mark:
            deps += [d for d in group if d not in done]
        deps += [d for d in extra if d not in done and d not in deps]
        spec = t.build_task(
            {"id": task_id, "title": title, "depends_on": deps, "args": args},
            len(specs), problems, line=lineno,
        )
        if spec is None:
            continue
        specs.append(spec)
        if parallel_mark:
            group.append(task_id)
        else:
            gate, group = [task_id], []
    if not specs and not problems:
        if done:
            problems.append(Problem("empty", "every task in tasks.md is already done"))
        else:
            problems.append(Problem("unknown_format", "no tasks found (expected lines like "
                                    "'- [ ] T001 [P] Do something')"))
    return _finish("tasks.md", problems, specs)
