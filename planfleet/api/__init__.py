"""The control plane: REST API (``/api``, OpenAPI at ``/docs``), web UI (``/``), Prometheus
metrics (``/metrics``), health (``/healthz``, ``/readyz``) and rq-dashboard (``/rq``)."""
from __future__ import annotations

from planfleet.api.app import create_app

__all__ = ["create_app"]
