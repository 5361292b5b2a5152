"""Shared fixtures: a throw-away Postgres database per test (cloned from a migrated template
built once per run) and a dedicated, flushed Redis db."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
import redis

from planfleet.schema import migrate
from planfleet.schema.repositories import Store

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
