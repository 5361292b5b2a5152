"""Schemathesis over the API's own OpenAPI schema, with a fixed seed (``bench/api_fuzz.py``
runs it longer with random seeds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from planfleet.api import create_app
from planfleet.config import Config
from planfleet.runtime import Runtime, open_runtime
from tests.support import api_fuzz

TOKEN = "fuzz-token"


@pytest.fixture
def fuzz_runtime(database_url: str, redis_url: str) -> Iterator[Runtime]:
    rt = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token=TOKEN))
    api_fuzz.seed_runtime(rt)
    yield rt
    rt.close()


def test_no_server_errors(fuzz_runtime: Runtime) -> None:
    assert api_fuzz.fuzz(fuzz_runtime, TOKEN, examples=25, seed=api_fuzz.SEED) >= 18


@pytest.mark.parametrize("body", [
    {"watch_dir": "in\x00put"}, {"max_parallel": 0}, {"auto_plan": "maybe"}, {"bogus": 1}])
def test_every_422_has_the_documented_shape(fuzz_runtime: Runtime, body: dict[str, object]
                                            ) -> None:
    with TestClient(create_app(fuzz_runtime, dashboard=False),
                    headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        r = c.put("/api/settings", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    assert all({"loc", "msg", "type"} <= set(item) for item in detail)
