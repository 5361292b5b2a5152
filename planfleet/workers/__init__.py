"""Plan and build workers (RQ jobs) and the reconciler."""

from __future__ import annotations
