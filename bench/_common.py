"""Helpers for the benchmarks: a scratch database and Redis db, percentiles."""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Iterator

import psycopg
import redis

from planfleet.schema import migrate

ADMIN_URL = os.environ.get(
    "PLANFLEET_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PLANFLEET_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")


@contextlib.contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A freshly migrated database, dropped afterwards."""
    url = psycopg.conninfo.make_conninfo(ADMIN_URL, dbname=name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    try:
        migrate.migrate(url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


@contextlib.contextmanager
def scratch_redis() -> Iterator[str]:
    conn = redis.Redis.from_url(REDIS_URL)
    conn.flushdb()
    try:
        yield REDIS_URL
    finally:
        conn.flushdb()
        conn.close()


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) of values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, int(p) - 1))]
