"""The watcher sidecar: records stable task-list files of the watch dir in Postgres."""

from __future__ import annotations

from planfleet.watcher.intake import is_ignored_name, read_stable
from planfleet.watcher.service import Watcher
from planfleet.watcher.tracker import StabilityTracker

__all__ = ["StabilityTracker", "Watcher", "is_ignored_name", "read_stable"]
