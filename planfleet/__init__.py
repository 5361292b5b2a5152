"""planfleet: task-list files in, dependency-aware plans out, built step by step by Redis-queued
workers that dispatch to Windmill scripts. Postgres is the source of truth."""

from __future__ import annotations

from planfleet.exceptions import (
    ConfigurationError,
    DatabaseUnavailable,
    InvalidTransition,
    NotFound,
    PlanfleetError,
    QueueUnavailable,
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "InvalidTransition",
    "NotFound",
    "PlanfleetError",
    "QueueUnavailable",
    "StoreError",
    "__version__",
]
