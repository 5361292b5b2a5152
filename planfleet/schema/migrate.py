"""Ordered SQL migrations, applied once each under an advisory lock."""

from __future__ import annotations

import threading
import time
from importlib import resources

import psycopg
import psycopg.conninfo
import psycopg.errors
import psycopg.sql
import structlog

from planfleet import exceptions
from planfleet.backoff import Backoff
from planfleet.schema import queries

log = structlog.get_logger(__name__)


def available() -> list[tuple[str, str]]:
    """``(version, sql)`` of every migration shipped, in order."""
    folder = resources.files("planfleet.schema").joinpath("migrations")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text("utf-8")) for f in files]


def migrate(url: str) -> list[str]:
    """Apply the migrations not yet applied; return their versions.

    Concurrent callers serialise on an advisory lock, so a fleet starting at once is safe and
    a second run is a no-op.
    """
    try:
        with psycopg.connect(url) as conn:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(queries.get("lock_migrations"))
                cur.execute(queries.get("create_migrations_table"))
                cur.execute(queries.get("applied_migrations"))
                done = {row[0] for row in cur.fetchall()}
                applied = []
                for version, sql in available():
                    if version in done:
                        continue
                    cur.execute(sql.encode())
                    cur.execute(queries.get("mark_migration_applied"), {"version": version})
                    applied.append(version)
    except psycopg.OperationalError as exc:
        raise exceptions.DatabaseUnavailable(f"Postgres is not reachable: {exc}") from exc
    if applied:
        log.info("migrations_applied", action="migrate", versions=applied)
    return applied


def ensure_database(url: str) -> bool:
    """Create the database ``url`` names when it does not exist yet; True if created."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    name = params.get("dbname")
    if not name:
        return False
    try:
        with psycopg.connect(url):
            return False
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise exceptions.DatabaseUnavailable(f"Postgres is not reachable: {exc}") from exc
    admin = psycopg.conninfo.make_conninfo(url, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(str(name)))
            )
    except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
        return False  # created meanwhile by another process (two CREATEs race on the catalog)
    except psycopg.OperationalError as exc:
        raise exceptions.DatabaseUnavailable(f"Postgres is not reachable: {exc}") from exc
    log.info("database_created", action="migrate", database=name)
    return True


def wait_until_ready(url: str, stop: threading.Event | None = None,
                     longest: float = 10.0) -> None:
    """Create and migrate the database, waiting (with backoff, logged) while Postgres does not
    answer: a service started before Postgres, or during a restart, waits instead of exiting
    (``planfleet up`` would stop the whole fleet when one process exits)."""
    waits = Backoff(first=0.5, cap=longest)
    while True:
        try:
            ensure_database(url)
            migrate(url)
            return
        except exceptions.DatabaseUnavailable as exc:
            delay = waits.next()
            log.warning("waiting_for_postgres", action="migrate", error=str(exc)[:300],
                        wait=delay)
            if stop is not None and stop.wait(delay):
                raise
            if stop is None:
                time.sleep(delay)
