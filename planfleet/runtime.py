"""Wiring shared by every process: configuration, store and queues, migrations at start."""

from __future__ import annotations

import dataclasses

from planfleet import queues
from planfleet.config import Config
from planfleet.schema import migrate
from planfleet.schema.repositories import Store


@dataclasses.dataclass
class Runtime:
    config: Config
    store: Store
    queues: queues.Queues

    def close(self) -> None:
        self.store.close()
        self.queues.connection.close()


def open_runtime(config: Config | None = None, *, apply_migrations: bool = True,
                 wait: bool = False, pool_max: int | None = None) -> Runtime:
    """Connect to Postgres and Redis as ``config`` says, applying migrations first; with
    ``wait``, wait for Postgres to answer instead of failing (long-running services)."""
    config = config or Config()
    if apply_migrations and wait:
        migrate.wait_until_ready(config.database_url)
    elif apply_migrations:
        migrate.ensure_database(config.database_url)
        migrate.migrate(config.database_url)
    return Runtime(
        config=config,
        store=Store.from_url(config.database_url,
                             **({} if pool_max is None else {"pool_max": pool_max})),
        queues=queues.Queues(
            queues.connect(config.redis_url),
            plan_queue=config.plan_queue,
            build_queue=config.build_queue,
        ),
    )
