"""Checks a folder of Windmill assets (the ``wmill`` layout) without a Windmill server.

- every script (``f/**/*.py``) has a ``main`` whose parameters match its ``.script.yaml``
  schema: the same names, required exactly when without a default, and compatible types;
- every flow (``*.flow/flow.yaml`` or ``*.flow.yaml``) names only scripts that exist;
- every schedule names a script or flow that exists, with arguments it takes;
- ``wmill.yaml`` parses to a mapping;
- the scripts that given task files would run (their ``solvers`` map, else the default) exist.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from planfleet import defaults

#: Python annotations and the JSON-schema types Windmill gives them.
_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
          "dict": "object", "list": "array", "bytes": "string"}


@dataclasses.dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    required: bool
    type: str | None


def _load_yaml(path: Path) -> tuple[Any, str | None]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return None, f"cannot be read as YAML: {exc}"


def main_params(source: str) -> list[Param] | str:
    """``main``'s parameters, or why there is none."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"is not valid Python (line {exc.lineno}: {exc.msg})"
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
             and n.name == "main"]
    if not mains:
        return "has no main function"
    args = mains[0].args
    positional = args.posonlyargs + args.args
    defaults_from = len(positional) - len(args.defaults)
    out = []
    for i, a in enumerate(positional):
        out.append(Param(a.arg, i < defaults_from, _type_of(a.annotation)))
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append(Param(a.arg, d is None, _type_of(a.annotation)))
    return out


def _type_of(node: ast.expr | None) -> str | None:
    if node is None:
        return None
    if isinstance(node, ast.Name):
        return _TYPES.get(node.id)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return _TYPES.get(node.value.id)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _TYPES.get(node.value)
    return None  # unions and the like: not compared


def check_script(root: Path, script: Path) -> Iterator[Problem]:
    where = str(script.relative_to(root))
    params = main_params(script.read_text(encoding="utf-8", errors="replace"))
    if isinstance(params, str):
        yield Problem(where, params)
        return
    meta_file = script.with_suffix(".script.yaml")
    if not meta_file.exists():
        yield Problem(where, f"has no metadata ({meta_file.name} is missing)")
        return
    meta, error = _load_yaml(meta_file)
    if error:
        yield Problem(str(meta_file.relative_to(root)), error)
        return
    schema = (meta or {}).get("schema") if isinstance(meta, dict) else None
    if not isinstance(schema, dict):
        yield Problem(str(meta_file.relative_to(root)), "has no schema")
        return
    props: dict[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    names = {p.name for p in params}
    for p in params:
        if p.name not in props:
            yield Problem(where, f"main takes {p.name!r}, which the schema does not list")
            continue
        if p.required != (p.name in required):
            want = "required" if p.required else "optional (it has a default)"
            yield Problem(where, f"{p.name!r} is {want} in main but "
                                 f"{'required' if p.name in required else 'optional'} "
                                 "in the schema")
        declared = (props[p.name] or {}).get("type")
        if p.type and declared and declared != p.type and not (
                p.type == "number" and declared == "integer"):
            yield Problem(where, f"{p.name!r} is {p.type} in main but {declared} in the schema")
    for extra in sorted(set(props) - names):
        yield Problem(where, f"the schema lists {extra!r}, which main does not take")


def _flow_scripts(modules: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(module id, script path) of every script module, at any depth."""
    for module in modules or []:
        if not isinstance(module, dict):
            continue
        value = module.get("value") or {}
        if value.get("type") == "script" and value.get("path"):
            yield str(module.get("id", "?")), str(value["path"])
        for branch in value.get("branches") or []:
            yield from _flow_scripts((branch or {}).get("modules") or [])
        yield from _flow_scripts(value.get("modules") or [])
        yield from _flow_scripts(value.get("default") or [])


def _scripts(root: Path) -> dict[str, Path]:
    found = {}
    for folder in ("f", "u"):
        for p in sorted((root / folder).glob("**/*.py")):
            found[str(p.relative_to(root).with_suffix(""))] = p
    return found


def _flows(root: Path) -> dict[str, Path]:
    found = {}
    for folder in ("f", "u"):
        for p in sorted((root / folder).glob("**/*.flow/flow.yaml")):
            found[str(p.parent.relative_to(root))[: -len(".flow")]] = p
        for p in sorted((root / folder).glob("**/*.flow.yaml")):
            found[str(p.relative_to(root))[: -len(".flow.yaml")]] = p
    return found


def validate(root: Path, task_files: Iterable[Path] = ()) -> list[Problem]:
    """Every problem found in the assets under ``root``."""
    problems: list[Problem] = []
    if not root.is_dir():
        return [Problem(str(root), "is not a folder")]
    conf = root / "wmill.yaml"
    if not conf.exists():
        problems.append(Problem("wmill.yaml", "is missing"))
    else:
        data, error = _load_yaml(conf)
        if error or not isinstance(data, dict):
            problems.append(Problem("wmill.yaml", error or "is not a mapping"))
    scripts = _scripts(root)
    flows = _flows(root)
    for script in scripts.values():
        problems.extend(check_script(root, script))
    for meta in sorted(root.glob("[fu]/**/*.script.yaml")):
        if not meta.with_name(meta.name[: -len(".script.yaml")] + ".py").exists():
            problems.append(Problem(str(meta.relative_to(root)), "describes a script that "
                                    "is not there"))
    for flow_file in flows.values():
        data, error = _load_yaml(flow_file)
        where = str(flow_file.relative_to(root))
        if error or not isinstance(data, dict):
            problems.append(Problem(where, error or "is not a mapping"))
            continue
        modules = (data.get("value") or {}).get("modules")
        if not isinstance(modules, list):
            problems.append(Problem(where, "has no value.modules list"))
            continue
        for module_id, script_path in _flow_scripts(modules):
            if script_path not in scripts:
                problems.append(Problem(where, f"module {module_id!r} runs {script_path}, "
                                        "which does not exist"))
    for sched in sorted(root.glob("[fu]/**/*.schedule.yaml")):
        data, error = _load_yaml(sched)
        where = str(sched.relative_to(root))
        if error or not isinstance(data, dict):
            problems.append(Problem(where, error or "is not a mapping"))
            continue
        target = str(data.get("script_path", ""))
        known = flows if data.get("is_flow") else scripts
        if target not in known:
            problems.append(Problem(where, f"runs {target or '(nothing)'}, which does not "
                                    "exist"))
        elif not data.get("is_flow"):
            params = main_params(scripts[target].read_text(encoding="utf-8"))
            if isinstance(params, list):
                names = {p.name for p in params}
                for arg in sorted(set(data.get("args") or {}) - names):
                    problems.append(Problem(where, f"passes {arg!r}, which {target} does "
                                            "not take"))
    for task_file in task_files:
        problems.extend(_check_task_file(task_file, scripts))
    return problems


def _check_task_file(path: Path, scripts: dict[str, Path]) -> Iterator[Problem]:
    from planfleet.planner import PlanningError, load_checked

    try:
        task_list = load_checked(path.read_bytes(), path.name)
    except (OSError, PlanningError) as exc:
        yield Problem(str(path), f"cannot be read: {exc}")
        return
    solvers = {name: spec.script for name, spec in task_list.solvers.items()}
    for task in task_list.tasks:
        script = task.script or next((solvers[s] for s in task.solver if solvers.get(s)),
                                     None) or defaults.DEFAULT_SCRIPT
        if script not in scripts:
            yield Problem(str(path), f"task {task.id} would run {script}, which does not exist")
