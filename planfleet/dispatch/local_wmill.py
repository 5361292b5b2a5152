"""What the local runner offers scripts in place of Windmill's ``wmill`` client (when that is
not installed): starting other scripts and reading their outcome, as local jobs. Only the calls
planfleet's own scripts use; names and return values follow ``wmill``'s."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from planfleet import defaults
from planfleet.dispatch import JobState
from planfleet.dispatch.local import LocalDispatcher

_where: tuple[Path, Path] | None = None


def configure(scripts_dir: Path, jobs_root: Path) -> None:
    global _where
    _where = (scripts_dir, jobs_root)


def _dispatcher() -> LocalDispatcher:
    if _where is None:
        raise RuntimeError("the local wmill client is only available inside the local runner")
    return LocalDispatcher(*_where)


def run_script_by_path_async(path: str, args: dict[str, Any] | None = None,
                             scheduled_in_secs: int | None = None) -> str:
    """Start script ``path`` as a new local job; its id."""
    if scheduled_in_secs:
        time.sleep(scheduled_in_secs)
    job_id = uuid.uuid4()
    d = _dispatcher()
    try:
        d.submit(job_id, path, dict(args or {}), defaults.STEP_TIMEOUT)
    finally:
        d.close()
    return str(job_id)


def get_job_status(job_id: str) -> str:
    """``WAITING``, ``RUNNING`` or ``COMPLETED``."""
    state = _dispatcher().status([uuid.UUID(job_id)])[uuid.UUID(job_id)].state
    if state in (JobState.SUCCESS, JobState.FAILURE):
        return "COMPLETED"
    return "RUNNING" if state is JobState.RUNNING else "WAITING"


def get_result(job_id: str) -> Any:
    """The result of a completed job (raises when it failed)."""
    st = _dispatcher().status([uuid.UUID(job_id)])[uuid.UUID(job_id)]
    if st.state is JobState.FAILURE:
        raise RuntimeError(st.error or "the job failed")
    if st.state is not JobState.SUCCESS:
        raise RuntimeError(f"job {job_id} is not completed")
    return st.result
