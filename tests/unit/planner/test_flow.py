"""The Windmill flow export, checked against the OpenFlow schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from planfleet.planner import generators as gen
from planfleet.planner import plan, plan_bytes
from planfleet.planner.flow import module_id, to_windmill_flow

REFERENCE = Path(__file__).resolve().parents[3].parent / "shared" / "reference"

# The parts of Windmill's OpenFlow schema (openflow.openapi.yaml, components/schemas) that the
# export uses, stricter than Windmill's (no unknown keys), for when the full spec is absent.
_TRANSFORM = {
    "oneOf": [
        {"type": "object", "required": ["type"], "additionalProperties": False,
         "properties": {"type": {"enum": ["static"]}, "value": {}}},
        {"type": "object", "required": ["type", "expr"], "additionalProperties": False,
         "properties": {"type": {"enum": ["javascript"]}, "expr": {"type": "string"}}},
    ]
}
OPENFLOW_SUBSET: dict[str, Any] = {
    "$ref": "#/$defs/OpenFlow",
    "$defs": {
        "OpenFlow": {
            "type": "object", "required": ["summary", "value"], "additionalProperties": False,
            "properties": {"summary": {"type": "string"}, "description": {"type": "string"},
                           "value": {"$ref": "#/$defs/FlowValue"}, "schema": {"type": "object"}},
        },
        "FlowValue": {
            "type": "object", "required": ["modules"],
            "properties": {"modules": {"type": "array", "items": {"$ref": "#/$defs/FlowModule"}}},
        },
        "FlowModule": {
            "type": "object", "required": ["id", "value"], "additionalProperties": False,
            "properties": {
                "id": {"type": "string"}, "summary": {"type": "string"},
                "value": {"oneOf": [{"$ref": "#/$defs/PathScript"}, {"$ref": "#/$defs/BranchAll"}]},
                "timeout": _TRANSFORM,
                "retry": {"type": "object", "additionalProperties": False, "properties": {
                    "exponential": {"type": "object", "additionalProperties": False, "properties": {
                        "attempts": {"type": "integer"}, "multiplier": {"type": "integer"},
                        "seconds": {"type": "integer", "minimum": 1},
                        "random_factor": {"type": "integer", "minimum": 0, "maximum": 100}}}}},
            },
        },
        "PathScript": {
            "type": "object", "required": ["type", "path", "input_transforms"],
            "additionalProperties": False,
            "properties": {"type": {"enum": ["script"]}, "path": {"type": "string"},
                           "input_transforms": {"type": "object", "additionalProperties": _TRANSFORM}},
        },
        "BranchAll": {
            "type": "object", "required": ["branches", "type"], "additionalProperties": False,
            "properties": {
                "type": {"enum": ["branchall"]}, "parallel": {"type": "boolean"},
                "branches": {"type": "array", "items": {
                    "type": "object", "required": ["modules"], "additionalProperties": False,
                    "properties": {"summary": {"type": "string"}, "skip_failure": {"type": "boolean"},
                                   "modules": {"type": "array",
                                               "items": {"$ref": "#/$defs/FlowModule"}}}}},
            },
        },
    },
}


def _schema() -> dict[str, Any]:
    full = REFERENCE / "openflow.openapi.yaml"
    if full.exists():
        spec = yaml.safe_load(full.read_text())
        return {"$ref": "#/components/schemas/OpenFlow", "components": spec["components"]}
    return OPENFLOW_SUBSET


SAM = b"""
project: SAM
max_parallel: 2
solvers: {angrav: {script: f/angrav/solver_dispatch, capacity: 1}}
tasks:
  - {id: SAM-100, title: Schema, estimate: 30}
  - {id: SAM-101, title: Login, estimate: 45, depends_on: [SAM-100], solver: angrav,
     args: {issue_id: SAM-101}}
  - {id: SAM-102, title: Logout, estimate: 20, depends_on: [SAM-100]}
  - {id: "sam 102", title: Same name once slugged, estimate: 5}
"""


def test_flow_validates_against_the_openflow_schema() -> None:
    p = plan_bytes(SAM, "sam.yaml")
    flow = to_windmill_flow(p, plan_id=7)
    jsonschema.validate(flow, _schema())
    modules = flow["value"]["modules"]
    assert len(modules) == len(p.batches)
    for wave_module, wave in zip(modules, p.batches, strict=True):
        assert wave_module["value"]["type"] == "branchall"
        assert wave_module["value"]["parallel"] is True
        assert len(wave_module["value"]["branches"]) == len(wave)
    ids = [m["id"] for w in modules for b in w["value"]["branches"] for m in b["modules"]]
    assert len(set(ids)) == len(ids) == 4
    login = next(b["modules"][0] for w in modules for b in w["value"]["branches"]
                 if b["summary"].startswith("SAM-101"))
    assert login["value"]["path"] == "f/angrav/solver_dispatch"
    assert login["value"]["input_transforms"]["issue_id"] == {"type": "static", "value": "SAM-101"}
    assert login["value"]["input_transforms"]["plan_id"] == {"type": "static", "value": 7}
    assert login["timeout"] == {"type": "static", "value": 1800}


def test_a_broken_flow_fails_the_schema() -> None:
    flow = to_windmill_flow(plan_bytes(SAM, "sam.yaml"))
    flow["value"]["modules"][0]["value"]["branches"][0]["modules"][0]["value"].pop("path")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(flow, _schema())


def test_big_flows_validate() -> None:
    p = plan(gen.random_task_list(300, 3, "layered"), max_parallel=8, budget=0.05)
    jsonschema.validate(to_windmill_flow(p), _schema())


def test_the_reference_spec_creates_flows_from_openflow() -> None:
    spec_file = REFERENCE / "windmill-openapi.yaml"
    if not spec_file.exists():
        pytest.skip("the Windmill OpenAPI spec is not beside the project")
    spec = yaml.safe_load(spec_file.read_text())
    create = spec["paths"]["/w/{workspace}/flows/create"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/OpenFlowWPath"} in body["allOf"]
    with_path = spec["components"]["schemas"]["OpenFlowWPath"]["allOf"]
    # the spec keeps OpenFlow itself in openflow.openapi.yaml, referenced from here
    assert with_path[0]["$ref"].endswith("openflow.openapi.yaml#/components/schemas/OpenFlow")
    assert with_path[1]["required"] == ["path"]


@pytest.mark.parametrize(("task_id", "expected"), [
    ("SAM-101", "sam_101"), ("101", "t_101"), ("---", "task"), ("Ünïcode", "n_code"),
])
def test_module_ids_are_windmill_safe(task_id: str, expected: str) -> None:
    assert module_id(task_id, set()) == expected
