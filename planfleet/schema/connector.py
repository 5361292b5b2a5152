"""The one place that talks to Postgres: a fork-safe connection pool and error wrapping."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from planfleet import defaults, exceptions
from planfleet.schema import queries

Cursor = psycopg.Cursor[dict[str, Any]]


class Database:
    """A lazily opened pool of connections to ``url``.

    The pool is rebuilt in a forked child (RQ forks a work horse per job), so a child never
    shares its parent's sockets.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = defaults.DB_POOL_MIN,
        max_size: int = defaults.DB_POOL_MAX,
        timeout: float = defaults.DB_CONNECT_TIMEOUT,
    ) -> None:
        self.url = url
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[dict[str, Any]]] | None = None
        self._pid = 0
        #: the connection a thread holds a lock on (see :meth:`holding`): its statements use it
        self._held = threading.local()

    def _get_pool(self) -> psycopg_pool.ConnectionPool[psycopg.Connection[dict[str, Any]]]:
        if self._pool is None or self._pid != os.getpid():
            # a pool inherited through fork is abandoned, never closed: its sockets are the
            # parent's
            self._pool = psycopg_pool.ConnectionPool(
                self.url,
                min_size=self._min_size,
                # no background fill: a forked work horse opens its first connection when
                # it needs it, in its own thread
                max_size=self._max_size,
                timeout=self._timeout,
                # autocommit: a single statement is its own transaction (one round trip);
                # transaction() opens an explicit one for several statements. No check on
                # checkout: a broken connection fails its statement (DatabaseUnavailable,
                # retried by the caller) and the pool replaces it.
                kwargs={"row_factory": dict_row, "autocommit": True},
                connection_class=psycopg.Connection[dict[str, Any]],
                num_workers=1,  # a short-lived work horse should not start three threads
                open=True,
            )
            self._pid = os.getpid()
        return self._pool

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """The connection this thread holds a lock on, else one of the pool's."""
        held = getattr(self._held, "conn", None)
        if held is not None:
            yield held
            return
        with self._get_pool().connection() as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """A cursor inside one transaction: committed on success, rolled back on error."""
        try:
            with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield cur
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise exceptions.DatabaseUnavailable(f"Postgres is not reachable: {exc}") from exc

    @contextlib.contextmanager
    def session(self) -> Iterator[Cursor]:
        """A cursor whose every statement is its own transaction: for one statement (a read,
        or a guarded update that is atomic by itself)."""
        try:
            with self._connection() as conn, conn.cursor() as cur:
                yield cur
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise exceptions.DatabaseUnavailable(f"Postgres is not reachable: {exc}") from exc

    @contextlib.contextmanager
    def holding(self, lock: str, unlock: str, ids: Sequence[int]) -> Iterator[list[int]]:
        """Try a session-level advisory lock per id of ``ids`` (the named query ``lock``,
        given ``ids``, answers the ``id`` of each lock it took; ``unlock``, given those,
        answers whether all were ``unlocked``) and hold the ones taken, with their connection,
        for the block: every statement of this thread inside it goes over that one connection
        (a batch of turns checks out no other). Yields the ids whose lock was taken. The locks
        are released at the end, or with the connection of a process that died; a connection
        whose release fails is closed, so no lock outlives its block."""
        if getattr(self._held, "conn", None) is not None:
            raise RuntimeError("this thread already holds a lock's connection")
        try:
            with self._get_pool().connection() as conn:
                rows = conn.execute(queries.get(lock), {"ids": list(ids)}).fetchall()
                locked = [int(r["id"]) for r in rows]
                if not locked:
                    yield locked
                    return
                self._held.conn = conn
                try:
                    yield locked
                finally:
                    self._held.conn = None
                    try:
                        row = conn.execute(queries.get(unlock), {"ids": locked}).fetchone()
                        released = bool(row and row["unlocked"])
                    except psycopg.Error:
                        released = False
                    if not released:
                        conn.close()  # the server lets go of them with the session
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise exceptions.DatabaseUnavailable(f"Postgres is not reachable: {exc}") from exc

    def fetch_all(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every row of the one named query ``query``."""
        with self.session() as cur:
            cur.execute(queries.get(query), params)
            return cur.fetchall()

    def matched(self, query: str, params: dict[str, Any]) -> bool:
        """Run the one named (guarded) statement ``query``; whether it matched a row."""
        with self.session() as cur:
            cur.execute(queries.get(query), params)
            return cur.fetchone() is not None

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None

