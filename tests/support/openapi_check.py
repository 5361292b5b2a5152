"""Checks HTTP requests (and the status they got) against an OpenAPI spec: the operation
exists, path and query parameters are declared and well-typed, the body matches its schema,
and a success status is one the operation documents."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.support.fake_windmill import Request

_METHODS = {"get", "post", "put", "patch", "delete"}
#: Path parameters that hold a path with slashes (Windmill routes them as wildcards).
_WILDCARDS = {"path", "script_path"}


def _strip_external(node: Any) -> Any:
    """Schemas referenced in other files are not here: accept anything there."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return {}
        return {k: _strip_external(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_strip_external(v) for v in node]
    return node


class SpecChecker:
    def __init__(self, spec_file: Path) -> None:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        spec = yaml.load(spec_file.read_text(), Loader=loader)  # noqa: S506 (safe loader)
        self.components = _strip_external(spec.get("components", {}))
        self.ops: list[tuple[str, re.Pattern[str], str, dict[str, Any], list[dict[str, Any]]]] = []
        for template, item in spec["paths"].items():
            shared = item.get("parameters", [])
            for method, op in item.items():
                if method not in _METHODS:
                    continue
                params = [self._deref(p) for p in [*shared, *op.get("parameters", [])]]
                regex = re.escape(template)
                for name in re.findall(r"\{(\w+)\}", template):
                    part = ".+" if name in _WILDCARDS else "[^/]+"
                    regex = regex.replace(re.escape("{" + name + "}"), f"(?P<{name}>{part})")
                self.ops.append((method.upper(), re.compile(regex), template, op, params))

    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/components/"), ref
            section, name = ref.split("/")[2:4]
            node = self.components[section][name]
        return node

    def _schema_errors(self, value: Any, schema: dict[str, Any]) -> list[str]:
        root = {**copy.deepcopy(schema), "components": self.components}
        validator = jsonschema.Draft7Validator(root, format_checker=jsonschema.FormatChecker())
        return [e.message for e in validator.iter_errors(value)]

    def _param_errors(self, name: str, raw: str, schema: dict[str, Any]) -> list[str]:
        schema = self._deref(schema)
        kind, fmt = schema.get("type"), schema.get("format")
        try:
            if kind == "boolean" and raw not in ("true", "false"):
                raise ValueError("not true/false")
            if kind == "integer":
                int(raw)
            if kind == "number":
                float(raw)
            if fmt == "uuid":
                uuid.UUID(raw)
            if fmt == "date-time":
                dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError as exc:
            return [f"parameter {name}={raw!r} is not a valid {fmt or kind}: {exc}"]
        if "enum" in schema and raw not in schema["enum"]:
            return [f"parameter {name}={raw!r} is not one of {schema['enum']}"]
        return []

    def check(self, req: Request) -> list[str]:
        path = req.path.removeprefix("/api")
        found = [(op, m, template, params) for method, rx, template, op, params in self.ops
                 if method == req.method and (m := rx.fullmatch(path))]
        if not found:
            return [f"{req.method} {path}: no such operation in the spec"]
        # the most specific template (most literal characters) wins, as in a router
        op, m, template, params = max(found, key=lambda f: len(re.sub(r"\{\w+\}", "", f[2])))
        where = f"{req.method} {template}"
        problems: list[str] = []
        for p in params:
            if p["in"] == "path":
                problems += self._param_errors(p["name"], m.group(p["name"]), p["schema"])
        declared = {p["name"]: p for p in params if p["in"] == "query"}
        for name, values in req.query.items():
            if name not in declared:
                problems.append(f"query parameter {name!r} is not declared")
                continue
            for raw in values:
                problems += self._param_errors(name, raw, declared[name].get("schema", {}))
        for name, p in declared.items():
            if p.get("required") and name not in req.query:
                problems.append(f"required query parameter {name!r} is missing")
        body_spec = op.get("requestBody")
        if body_spec is None:
            if req.body:
                problems.append("a body was sent to an operation that takes none")
        else:
            body_spec = self._deref(body_spec)
            if not req.body:
                if body_spec.get("required"):
                    problems.append("the required body is missing")
            else:
                content = body_spec.get("content", {})
                if "application/json" not in content:
                    problems.append(f"JSON body sent, operation takes {list(content)}")
                elif req.headers.get("content-type", "").split(";")[0] != "application/json":
                    problems.append("JSON body sent without Content-Type: application/json")
                else:
                    schema = content["application/json"].get("schema", {})
                    problems += self._schema_errors(json.loads(req.body), schema)
        if req.status and 200 <= req.status < 300 and str(req.status) not in op["responses"]:
            problems.append(f"answered {req.status}, the spec documents {list(op['responses'])}")
        return [f"{where}: {p}" for p in problems]
