"""Shared fixtures: a throw-away Postgres database per test (cloned from a migrated template
built once per run) and a dedicated, flushed Redis db."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from planfleet.schema import migrate
from planfleet.schema.repositories import Store
from tests.support.fake_windmill import FakeWindmill
from tests.support.openapi_check import SpecChecker

ADMIN_URL = os.environ.get(
    "PLANFLEET_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PLANFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
IN_CI = bool(os.environ.get("CI"))
_counter = itertools.count()


def _url_for(name: str) -> str:
    return psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)


def _unavailable(what: str, exc: Exception) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required in CI: {exc}")
    pytest.skip(f"{what} not available: {exc}")


def _admin(sql: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    name = f"planfleet_tpl_{os.getpid()}"
    try:
        _admin(f"DROP DATABASE IF EXISTS {name}")
        _admin(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as exc:
        _unavailable("Postgres", exc)
    migrate.migrate(_url_for(name))
    yield name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(template_db: str) -> Iterator[str]:
    name = f"planfleet_t_{os.getpid()}_{next(_counter)}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield _url_for(name)
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store.from_url(database_url)
    yield s
    s.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    conn = redis.Redis.from_url(REDIS_URL)
    try:
        conn.flushdb()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    yield REDIS_URL
    conn.flushdb()
    conn.close()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


def wait_for(cond: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> object:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {cond}")
        time.sleep(interval)


def stays(cond: Callable[[], object], duration: float, interval: float = 0.05) -> None:
    """A negative assertion: ``cond`` holds now and for ``duration`` seconds more, checked
    all along (it fails the moment it stops holding). ``duration`` must be longer than what
    would have to happen for it to break (a stability window, a poll, a worker's turn)."""
    deadline = time.monotonic() + duration
    while True:
        assert cond(), f"stopped holding: {cond}"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


# -- Windmill ---------------------------------------------------------------------------------

WINDMILL_SPEC = Path(os.environ.get(
    "WINDMILL_OPENAPI",
    Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "windmill-openapi.yaml"))


@pytest.fixture(scope="session")
def windmill_spec() -> SpecChecker | None:
    """Windmill's OpenAPI spec, when it is beside the project (CI has it)."""
    if not WINDMILL_SPEC.exists():
        return None
    return SpecChecker(WINDMILL_SPEC)


@pytest.fixture
def windmill(windmill_spec: SpecChecker | None) -> Iterator[FakeWindmill]:
    """A loopback Windmill; every request it got is checked against the spec afterwards."""
    fake = FakeWindmill(scripts={"f/planner/solver_dispatch", "f/test/work"})
    yield fake
    fake.close()
    if windmill_spec is not None:
        problems = [p for r in fake.requests for p in windmill_spec.check(r)]
        assert not problems, "requests outside Windmill's API:\n" + "\n".join(problems[:20])
