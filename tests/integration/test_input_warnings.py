"""Warnings on an input (lines that look like tasks but were not planned): stored with the
input when it is planned, shown by the API, the UI and the CLI, cleared by a replan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from planfleet.api import create_app
from planfleet.config import Config
from planfleet.runtime import Runtime, open_runtime
from planfleet.workers import planning

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TASKS_MD = b"""# Tasks: demo

## Phase 1: Setup
- [ ] T001 Create the project
- [ ] TXXX Placeholder the generator left behind
- [ ] T002 [P] Configure linting

## Checklist
- [ ] Every test passes
"""


@pytest.fixture
def rt(database_url: str, redis_url: str) -> Iterator[Runtime]:
    r = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token=TOKEN))
    yield r
    r.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), raise_server_exceptions=False) as c:
        yield c


def planned_input(rt: Runtime, client: TestClient, content: bytes, name: str) -> int:
    rt.store.settings.update(auto_build=False)
    r = client.post(f"/api/inputs?filename={name}", content=content, headers=AUTH)
    assert r.status_code == 201, r.text
    input_id = int(r.json()["input_id"])
    assert planning.plan_input(rt, input_id, f"job-{input_id}") is not None
    return input_id


def test_warnings_reach_the_store_api_ui_and_cli(rt: Runtime, client: TestClient,
                                                 database_url: str, redis_url: str,
                                                 tmp_path: Path) -> None:
    input_id = planned_input(rt, client, TASKS_MD, "tasks.md")
    got = rt.store.inputs.get(input_id)
    assert got.status.value == "planned"
    codes = sorted((w["code"], w["line"]) for w in got.warnings)
    assert codes == [("not_a_task", 9), ("unreadable_task", 5)]

    detail = client.get(f"/api/pending-inputs/{input_id}", headers=AUTH).json()
    assert [w["line"] for w in detail["warnings"]] == [w["line"] for w in got.warnings]
    listed = client.get("/api/pending-inputs", headers=AUTH).json()["items"]
    assert next(i for i in listed if i["id"] == input_id)["warnings"] == detail["warnings"]
    (plan,) = rt.store.plans.of_input(input_id)
    assert plan.summary["warnings"] == 2

    page = client.get(f"/inputs/{input_id}", headers=AUTH).text
    assert "Warnings (2)" in page and "TXXX Placeholder" in page and "line 9" in page

    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url}
    bin_dir = Path(sys.executable).parent
    shown = subprocess.run([str(bin_dir / "planfleet"), "input", str(input_id)], env=env,
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "2 warnings:" in shown.stdout and "[unreadable_task] line 5" in shown.stdout
    as_json = subprocess.run([str(bin_dir / "planfleet"), "inputs", "--json"], env=env,
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    rows, text, decoder = [], as_json.stdout.strip(), json.JSONDecoder()
    while text:
        row, end = decoder.raw_decode(text)
        rows.append(row)
        text = text[end:].strip()
    assert len(next(r for r in rows if r["id"] == input_id)["warnings"]) == 2

    # a replan starts from no warnings and sets them again from the same bytes
    client.post(f"/api/inputs/{input_id}/replan", headers=AUTH)
    assert rt.store.inputs.get(input_id).warnings == []
    planning.plan_input(rt, input_id, "job-again")
    assert len(rt.store.inputs.get(input_id).warnings) == 2


def test_a_clean_file_has_no_warnings(rt: Runtime, client: TestClient) -> None:
    input_id = planned_input(rt, client, b"## Phase 1\n- [ ] T001 One\n- [ ] T002 Two\n",
                             "tasks.md")
    assert rt.store.inputs.get(input_id).warnings == []
    page = client.get(f"/inputs/{input_id}", headers=AUTH).text
    assert "input-warnings" not in page


def test_a_refused_file_keeps_its_warnings_beside_its_problems(rt: Runtime,
                                                              client: TestClient) -> None:
    rt.store.settings.update(auto_build=False)
    doc = b"## Phase 1\n- [ ] T001 One\n- [ ] T001 Other\n- [ ] TXXX Placeholder\n"
    r = client.post("/api/inputs?filename=tasks.md", content=doc, headers=AUTH)
    input_id = int(r.json()["input_id"])
    assert planning.plan_input(rt, input_id, "job-x") is None
    detail = client.get(f"/api/pending-inputs/{input_id}", headers=AUTH).json()
    assert detail["status"] == "failed"
    assert [p["code"] for p in detail["problems"]] == ["duplicate_id"]
    assert [(w["code"], w["line"]) for w in detail["warnings"]] == [("unreadable_task", 4)]
    page = client.get(f"/inputs/{input_id}", headers=AUTH).text
    assert "Why it failed" in page and "Warnings (1)" in page
