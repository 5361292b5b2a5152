"""The RQ worker class of the fleet: an ``rq.Worker`` that does the expensive start-up once.

RQ forks a work horse per job. Without this class every horse would import the planner
(networkx), configure logging and check the migrations anew — a few hundred milliseconds per
job. Here the parent does it once and each horse inherits it through fork.

    rq worker plan_queue --worker-class planfleet.workers.worker.Worker --serializer json
"""

from __future__ import annotations

from typing import Any

import rq

from planfleet.workers import jobs


class Worker(rq.Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        jobs.preload()
