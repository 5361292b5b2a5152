"""planfleet's errors. Each class's docstring is its default message.

::

    PlanfleetError
    ├── ConfigurationError
    │   └── InvalidSetting
    ├── StoreError
    │   ├── DatabaseUnavailable
    │   ├── InvalidTransition
    │   └── NotFound
    ├── QueueUnavailable
    └── PlanningError   (planner.errors: a task list that cannot be planned)
"""

from __future__ import annotations


class PlanfleetError(Exception):
    """A planfleet error occurred."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(PlanfleetError):
    """The configuration is invalid."""


class InvalidSetting(ConfigurationError):
    """The setting's value is not allowed."""


class StoreError(PlanfleetError):
    """The store could not complete the operation."""


class DatabaseUnavailable(StoreError):
    """Postgres is not reachable."""


class InvalidTransition(StoreError):
    """The record is not in a state that allows this change."""


class NotFound(StoreError):
    """No such record."""


class QueueUnavailable(PlanfleetError):
    """Redis is not reachable."""
