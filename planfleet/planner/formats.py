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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planfleet import script_paths, sources
from planfleet.planner import markdown
from planfleet.planner import tasks as t
from planfleet.planner.errors import PlanningError, Problem

#: YAML aliases accepted in one document (guards against "billion laughs" expansion).
MAX_YAML_ALIASES = 100
#: Tasks accepted in one list.
MAX_TASKS = 1_000_000
#: Warnings kept on one task list (the rest are counted in the last one).
MAX_WARNINGS = 200


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
_MD_TASK = re.compile(r"^\s*[-*]\s*\[[ xX]\]\s*(?:\*\*|`)?(?:T\d+|\d+(?:\.\d+)*\.?\s)|^#{2,6}\s+T\d+")


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
    if any(_SPECKIT_TASK.match(line) or _MD_TASK.match(line) for line in text.splitlines()[:500]):
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
    try:
        task_list = _load(content, filename)
    except _Partial as exc:
        _check_source(exc.partial, content, filename, exc.problems)
        raise
    problems: list[Problem] = []
    _check_source(task_list, content, filename, problems)
    if problems:
        raise _Partial(task_list, problems)
    return task_list


def _check_source(task_list: t.TaskList, content: bytes, filename: str,
                  problems: list[Problem]) -> None:
    """The source the file declares must be the one its input was recorded under: the one
    :func:`planfleet.sources.declared` reads without planning."""
    if task_list.source is not None and sources.declared(content, filename) != task_list.source:
        problems.append(Problem(
            "bad_field", "the source key could not be read without parsing the whole file: "
            "write it on a line of its own at the top level, as 'source: NAME'",
            field="source"))


def _load(content: bytes, filename: str) -> t.TaskList:
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
    if isinstance(data, dict) and data.get("format") == "youtrack":
        return _youtrack_envelope(data)
    if _old_youtrack(data):
        raise PlanningError([Problem(
            "unknown_format", "this looks like a YouTrack answer in another shape; expected a "
            "JSON list of issues as /api/issues returns them with fields idReadable, summary, "
            "customFields(name,value(name,minutes,presentation)), links(direction,"
            "linkType(name,sourceToTarget,targetToSource),issues(idReadable,resolved)) — "
            "'planfleet pull youtrack' writes that")])
    if _is_taskmaster(data):
        return _taskmaster(data)
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
                       "qa", "policy", "source"):
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
        problems.append(Problem("bad_script", why, field="qa"))
        qa = None
    policy = t.build_policy(data.get("policy"), problems)
    source = None
    if "source" in data:
        try:
            source = sources.explicit(sources.check_key(data["source"]))
        except ValueError as exc:
            problems.append(Problem("bad_field", f"source {exc}", field="source"))
    built = [t.build_task(raw, i, problems) for i, raw in enumerate(raw_tasks)]
    return _finish(
        kind, problems, [x for x in built if x is not None],
        project=None if project is None else str(project), max_parallel=max_parallel,
        solvers=solvers, qa=qa, policy=policy, source=source,
    )


def _finish(kind: str, problems: list[Problem], specs: list[t.TaskSpec], **extra: Any) -> t.TaskList:
    warnings = tuple(extra.pop("warnings", ()))
    if len(warnings) > MAX_WARNINGS:
        rest = len(warnings) - (MAX_WARNINGS - 1)
        warnings = warnings[:MAX_WARNINGS - 1] + (Problem(
            "more_warnings", f"and {rest} more warnings like these (the first "
            f"{MAX_WARNINGS - 1} are listed)"),)
    extra["warnings"] = warnings
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

#: YouTrack's default link types, by name: (outward label, inward label). The outward end of a
#: ``Depend`` link "is required for" the issues it lists (YouTrack's documented default).
YT_LINK_TYPES = {
    "depend": ("is required for", "depends on"),
    "relates": ("relates to", "relates to"),
    "duplicate": ("is duplicated by", "duplicates"),
    "subtask": ("parent for", "subtask of"),
}
#: The estimate field YouTrack projects have by default.
YT_ESTIMATE_FIELD = "Estimation"


class YouTrackOptions(BaseModel):
    """How an export is read: the envelope ``planfleet pull youtrack`` writes around the issues
    when asked for another estimate field or custom priorities."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    estimate_field: str = YT_ESTIMATE_FIELD
    priority_field: str = "Priority"
    #: priority values (case-insensitive) to numbers, for values outside the usual names
    priorities: dict[str, int] = Field(default_factory=dict)


def _yt_field(issue: dict[str, Any], name: str) -> tuple[bool, Any]:
    for field in issue.get("customFields") or []:
        if isinstance(field, dict) and str(field.get("name", "")).lower() == name.lower():
            return True, field.get("value")
    return False, None


def _yt_links(issue: dict[str, Any], warnings: list[Problem]) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]]]:
    """(issues this one depends on, issues that depend on this one)."""
    depends: list[dict[str, Any]] = []
    required_for: list[dict[str, Any]] = []
    me = str(issue.get("idReadable"))
    for link in issue.get("links") or []:
        if not isinstance(link, dict):
            continue
        lt = link.get("linkType") or {}
        if not isinstance(lt, dict):
            lt = {}
        others = [x for x in [*(link.get("issues") or []), *(link.get("trimmedIssues") or [])]
                  if isinstance(x, dict)]
        direction = str(link.get("direction", "")).upper()
        s2t = str(lt.get("sourceToTarget") or "").strip().lower()
        t2s = str(lt.get("targetToSource") or "").strip().lower()
        name = str(lt.get("name") or "").strip().lower()
        if not s2t and not t2s and name in YT_LINK_TYPES:
            s2t, t2s = YT_LINK_TYPES[name]
        if not s2t and not t2s:
            if others:
                warnings.append(Problem(
                    "unknown_link", f"link type {lt.get('name') or '(no name)'!r} has no "
                    "direction names (sourceToTarget/targetToSource) and is not one YouTrack "
                    f"defines; its links to {', '.join(str(o.get('idReadable')) for o in others[:5])}"
                    " are not read as dependencies", task=me))
            continue
        label = s2t if direction == "OUTWARD" else t2s if direction == "INWARD" else ""
        if label == "depends on":
            depends += others
        elif label == "is required for":
            required_for += others
    return depends, required_for


def _youtrack_envelope(data: dict[str, Any]) -> t.TaskList:
    issues = data.get("issues")
    options = {k: v for k, v in data.items()
               if k not in ("format", "issues", "project", "query")}
    try:
        opts = YouTrackOptions.model_validate(options)
    except ValidationError as exc:
        raise PlanningError([Problem("bad_field", f"youtrack options: {t._first_error(exc)}",
                                     field="youtrack")]) from exc
    if not isinstance(issues, list):
        raise PlanningError([Problem("bad_field", "'issues' must be a list of YouTrack issues",
                                     field="issues")])
    source = None
    if "project" in data:
        # what was pulled: the lineage of every pull of this project and search
        source = sources.from_document(data)
        if source is None:
            raise PlanningError([Problem(
                "bad_field", "'project' must name the YouTrack project pulled (and 'query', "
                f"when given, its extra search terms, at most {sources.MAX_QUERY_LENGTH} "
                "characters)", field="project")])
    task_list = _youtrack(issues, opts)
    return task_list.model_copy(update={"source": source}) if source else task_list


def _old_youtrack(data: Any) -> bool:
    """An answer of YouTrack's old REST API (``/rest/issue``: ``{"issue": […]}``, issues with
    ``field`` lists) or of the new one without ``idReadable``."""
    if isinstance(data, dict):
        if "issue" in data and "tasks" not in data:
            return True
        items = data.get("issues")
    else:
        items = data
    return isinstance(items, list) and bool(items) and all(isinstance(x, dict) for x in items) and all(
        ("field" in x and "id" in x) or ("$type" in x and "idReadable" not in x)
        or ("summary" in x and ("customFields" in x or "links" in x) and "idReadable" not in x)
        for x in items)


def _youtrack(issues: list[dict[str, Any]], opts: YouTrackOptions | None = None) -> t.TaskList:
    opts = opts or YouTrackOptions()
    problems: list[Problem] = []
    warnings: list[Problem] = []
    raw: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    custom = {k.strip().lower(): v for k, v in opts.priorities.items()}
    with_estimate = 0
    for i, issue in enumerate(issues):
        if not isinstance(issue, dict):
            problems.append(Problem("bad_field", f"issue #{i + 1} must be a mapping"))
            continue
        task_id = issue.get("idReadable")
        fields: dict[str, Any] = {"id": task_id, "title": issue.get("summary") or ""}
        _, prio = _yt_field(issue, opts.priority_field)
        if isinstance(prio, dict):
            prio = prio.get("name")
        if isinstance(prio, str) and prio.strip().lower() in custom:
            prio = custom[prio.strip().lower()]
        if prio is not None:
            fields["priority"] = prio
        has, est = _yt_field(issue, opts.estimate_field)
        with_estimate += has
        if isinstance(est, dict):
            est = est.get("minutes") if est.get("minutes") is not None else est.get("presentation")
        if est is not None:
            fields["estimate"] = est
        fields["args"] = {"issue_id": task_id}
        if isinstance(task_id, str) and task_id in raw:
            problems.append(Problem("duplicate_id", f"issue {task_id} appears twice", task=task_id))
            continue
        raw[str(task_id)] = fields
        order.append(str(task_id))
        fields["_index"] = i
    if issues and not with_estimate:
        warnings.append(Problem(
            "no_estimate_field", f"no issue has a {opts.estimate_field!r} field: every task gets "
            "the default estimate (name the field with --estimate-field)",
            field=opts.estimate_field))
    deps: dict[str, set[str]] = {k: set() for k in raw}
    resolved: set[str] = set()  # linked issues resolved in YouTrack: done in the source
    for issue in issues:
        if not isinstance(issue, dict):
            continue
        me = str(issue.get("idReadable"))
        if me not in raw:
            continue
        depends, required_for = _yt_links(issue, warnings)
        for other in depends:
            oid = str(other.get("idReadable"))
            if oid in raw:
                deps[me].add(oid)
            elif not other.get("resolved"):
                deps[me].add(oid)  # reported as an unknown dependency by the planner
            else:
                resolved.add(oid)
        for other in required_for:
            oid = str(other.get("idReadable"))
            if oid in raw:
                deps[oid].add(me)
            elif other.get("resolved"):
                resolved.add(oid)
    specs = []
    for key in order:
        fields = raw[key]
        index = fields.pop("_index")
        fields["depends_on"] = sorted(deps[key])
        spec = t.build_task(fields, index, problems)
        if spec is not None:
            specs.append(spec)
    return _finish("youtrack", problems, specs, warnings=tuple(warnings),
                   done_in_source=tuple(sorted(resolved - set(raw))))


# -- spec-kit tasks.md and Kiro tasks ---------------------------------------------------------


def _speckit(text: str) -> t.TaskList:
    """A markdown task list (see :mod:`planfleet.planner.markdown` for the rules)."""
    sc = markdown.scan(text)
    built = markdown.build(sc)
    problems = list(built.problems)
    warnings = list(built.warnings)
    for lineno, why in sorted(sc.unread.items()):
        if why != "checkbox without a task id":
            warnings.append(Problem("unreadable_task", f"{why}; not planned", line=lineno))
    specs: list[t.TaskSpec] = []
    for item, deps in built.tasks:
        args: dict[str, Any] = {"task_id": item.id}
        if 0 <= item.phase < len(sc.phases):
            args["phase"] = sc.phases[item.phase].title
        else:
            args["phase"] = ""
        if item.story:
            args["story"] = item.story
        spec = t.build_task({"id": item.id, "title": item.title, "depends_on": deps,
                             "args": args}, len(specs), problems, line=item.line)
        if spec is not None:
            specs.append(spec)
    kind = "tasks.md" if sc.kind == "tasks.md" else "kiro"
    done = tuple(dict.fromkeys(i.id for i in built.done))
    if not specs and not problems:
        if built.done:
            problems.append(Problem("empty", f"every task is already done ({len(built.done)} "
                                    "done)"))
        else:
            seen = []
            if sc.no_id:
                seen.append(f"{sc.no_id} checkbox lines without a task id")
            if sc.unread:
                seen.append(f"{len([w for w in sc.unread.values() if 'no readable' in w])} "
                            "lines with an unreadable id")
            also = f"; found {', '.join(seen)}" if seen else ""
            problems.append(Problem("unknown_format", "no tasks found (expected lines like "
                                    "'- [ ] T001 [P] Do something', '### T001: Title' or "
                                    f"'- [ ] 1.1 Do something'){also}"))
    return _finish(kind, problems, specs, warnings=tuple(warnings), done_in_source=done)


# -- Taskmaster tasks.json ----------------------------------------------------------------------

_TASKMASTER_KEYS = {"status", "subtasks", "details", "testStrategy"}
_TASKMASTER_DONE = {"done", "completed", "cancelled", "canceled"}


def _is_taskmaster(data: Any) -> bool:
    def tasks_of(x: Any) -> Any:
        return x.get("tasks") if isinstance(x, dict) else None

    lists = [tasks_of(data)] if isinstance(data, dict) and "tasks" in data else (
        [tasks_of(v) for v in data.values()] if isinstance(data, dict) else [])
    lists = [x for x in lists if isinstance(x, list)]
    return bool(lists) and all(
        any(isinstance(task, dict) and _TASKMASTER_KEYS & set(task) for task in tasks)
        or not tasks for tasks in lists) and any(lists)


def _taskmaster(data: dict[str, Any]) -> t.TaskList:
    """Taskmaster's tasks.json, plain (``{"tasks": […]}``) or tagged (``{"master": {"tasks":
    […]}}``). Done and cancelled tasks are left out; a task with open subtasks is planned as its
    subtasks (ids ``3.1``, ``3.2``); a dependency on it means one on all of them."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    if "tasks" in data and isinstance(data["tasks"], list):
        tags = {"": data}
    else:
        tags = {str(k): v for k, v in data.items()
                if isinstance(v, dict) and isinstance(v.get("tasks"), list)}
        skipped = [str(k) for k, v in data.items() if str(k) not in tags]
        if skipped:
            warnings.append(Problem("not_a_task", f"entries without a task list not planned: "
                                    f"{', '.join(skipped[:10])}"))
    prefix_all = len(tags) > 1
    raw: list[dict[str, Any]] = []
    done: set[str] = set()
    members: dict[str, list[str]] = {}  # a parent's id -> its open subtasks' ids
    parent_deps: dict[str, list[str]] = {}
    for tag, body in tags.items():
        # not "tag/id": a task id is a URL path segment and may not hold '/'
        pre = f"{tag.replace('/', '-')}:" if prefix_all else ""
        for n, task in enumerate(body["tasks"]):
            if not isinstance(task, dict) or "id" not in task:
                problems.append(Problem("bad_field", f"task #{n + 1}{' of ' + tag if tag else ''} "
                                        "must be a mapping with an id"))
                continue
            tid = f"{pre}{task['id']}"
            deps = [f"{pre}{d}" for d in task.get("dependencies") or []]
            status = str(task.get("status") or "pending").lower()
            subtasks = [s for s in task.get("subtasks") or [] if isinstance(s, dict)]
            if status in _TASKMASTER_DONE:
                done.add(tid)
                done.update(f"{tid}.{s.get('id')}" for s in subtasks)
                continue
            open_subs = [s for s in subtasks
                         if str(s.get("status") or "pending").lower() not in _TASKMASTER_DONE]
            done.update(f"{tid}.{s.get('id')}" for s in subtasks if s not in open_subs)
            args = {"task_id": str(task["id"]), **({"tag": tag} if tag else {})}
            if not open_subs:
                raw.append(_tm_fields(task, tid, deps, args))
                continue
            members[tid] = [f"{tid}.{s.get('id')}" for s in open_subs]
            parent_deps[tid] = deps
            for sub in open_subs:
                sid = f"{tid}.{sub.get('id')}"
                sdeps = []
                for d in sub.get("dependencies") or []:
                    text = str(d)
                    # a number names a sibling subtask; "3.1" (or a parent's number) names a task
                    sdeps.append(f"{tid}.{text}" if isinstance(d, int) else f"{pre}{text}")
                fields = _tm_fields(sub, sid, sdeps + deps, {**args, "subtask_id": str(sub.get("id")),
                                                           "parent": str(task["id"])})
                if "priority" not in fields and task.get("priority") is not None:
                    fields["priority"] = task["priority"]
                raw.append(fields)
    specs: list[t.TaskSpec] = []
    for n, fields in enumerate(raw):
        expanded: list[str] = []
        for d in fields["depends_on"]:
            if d in done:
                continue
            expanded += members.get(d, [d])
        fields["depends_on"] = [d for d in dict.fromkeys(expanded) if d != fields["id"]]
        spec = t.build_task(fields, n, problems)
        if spec is not None:
            specs.append(spec)
    if not specs and not problems and done:
        problems.append(Problem("empty", f"every task is already done ({len(done)} done)"))
    return _finish("taskmaster", problems, specs, warnings=tuple(warnings),
                   done_in_source=tuple(sorted(done)))


def _tm_fields(task: dict[str, Any], tid: str, deps: list[str], args: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"id": tid, "title": str(task.get("title") or ""),
                              "depends_on": [str(d) for d in deps], "args": args}
    if task.get("priority") is not None:
        fields["priority"] = task["priority"]
    return fields
