"""A task's effective step policy: the fleet's defaults, the task file's ``policy``, then the
task's own ``max_attempts`` and ``timeout`` — the one place that layers them, for the step
build, the flow build and the flow export alike."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from planfleet import defaults


@dataclasses.dataclass(frozen=True)
class StepPolicy:
    max_attempts: int = defaults.STEP_MAX_ATTEMPTS
    #: seconds before the second attempt, doubling (with jitter) up to ``retry_cap``
    retry_base: float = defaults.STEP_RETRY_BASE
    retry_cap: float = defaults.STEP_RETRY_CAP
    #: seconds an attempt may run
    timeout: float = defaults.STEP_TIMEOUT
    #: a timed-out attempt's next one gets this many times its timeout
    timeout_factor: float = defaults.TIMEOUT_FACTOR
    #: when the attempts are used up: ``escalate`` (a person decides) or ``fail``
    on_exhausted: str = "escalate"


def effective(fleet: StepPolicy, plan_policy: Mapping[str, Any] | None,
              task_max_attempts: int | None, task_timeout: float | None) -> StepPolicy:
    """The fleet's policy with the file's ``policy`` mapping on top, then the task's own."""
    over = {k: v for k, v in (plan_policy or {}).items()
            if v is not None and k in StepPolicy.__dataclass_fields__}
    policy = dataclasses.replace(fleet, **over)
    if task_max_attempts:
        policy = dataclasses.replace(policy, max_attempts=task_max_attempts)
    if task_timeout:
        policy = dataclasses.replace(policy, timeout=float(task_timeout))
    return policy
