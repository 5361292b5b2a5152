"""The local runner: Windmill-style scripts (a file with ``def main(...)``) run on this machine.

Each job gets a folder ``<root>/<job id>/`` holding its spec, pid, log and result, so any
process (a restarted build worker included) can tell what a job id did. Creating the folder's
``spawn.lock`` exclusively is the submission: a second submit of the same id does nothing, as
Windmill answers ``400 already exists``. Jobs run in their own session, so a build worker that
dies leaves its running jobs to finish and record their results.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from planfleet.dispatch import DispatchError, JobState, JobStatus
from planfleet.processes import alive


#: Jobs a closed dispatcher left running (see LocalDispatcher.close).
_detached: list[subprocess.Popen[bytes]] = []


class LocalDispatcher:
    """Runs ``<scripts_dir>/<path>.py`` in a subprocess per job."""

    def __init__(self, scripts_dir: Path, root: Path) -> None:
        self.scripts_dir = scripts_dir
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._children: dict[uuid.UUID, subprocess.Popen[bytes]] = {}

    def script_file(self, script: str) -> Path:
        path = (self.scripts_dir / f"{script}.py").resolve()
        if not path.is_relative_to(self.scripts_dir.resolve()):
            raise DispatchError(f"script path {script!r} leaves the scripts dir", permanent=True)
        return path

    def submit(self, job_id: uuid.UUID, script: str, args: dict[str, Any], timeout: float) -> None:
        path = self.script_file(script)
        if not path.exists():
            raise DispatchError(f"script {script} not found (no {path})", permanent=True)
        folder = self.root / str(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / "spawn.lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # submitted before
        os.close(fd)
        spec = {"script": script, "file": str(path), "args": args, "timeout": timeout,
                "submitted_at": time.time()}
        (folder / "spec.json").write_text(json.dumps(spec, default=str))
        with open(folder / "log.txt", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "planfleet.dispatch.local_exec", str(folder)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=str(self.scripts_dir),
            )
        (folder / "pid").write_text(str(proc.pid))
        self._children[job_id] = proc

    def _one(self, job_id: uuid.UUID) -> JobStatus:
        folder = self.root / str(job_id)
        link = str(folder / "log.txt")
        result_file = folder / "result.json"
        proc = self._children.get(job_id)
        if proc is not None and proc.poll() is not None:
            self._children.pop(job_id, None)  # reaped
        if result_file.exists():
            data = json.loads(result_file.read_text())
            return JobStatus(
                JobState.SUCCESS if data.get("success") else JobState.FAILURE,
                result=data.get("result"), error=data.get("error"),
                duration=data.get("duration"), link=link,
            )
        if not (folder / "spawn.lock").exists():
            return JobStatus(JobState.UNKNOWN)
        try:
            pid = int((folder / "pid").read_text())
        except (OSError, ValueError):
            return JobStatus(JobState.QUEUED, link=link)  # being spawned right now
        if alive(pid) and (proc is None or proc.poll() is None):
            return JobStatus(JobState.RUNNING, link=link)
        if result_file.exists():  # finished between the two looks
            return self._one(job_id)
        return JobStatus(JobState.FAILURE, error="the script process died without a result",
                         link=link)

    def status(self, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, JobStatus]:
        return {j: self._one(j) for j in job_ids}

    def cancel(self, job_id: uuid.UUID, reason: str) -> None:
        folder = self.root / str(job_id)
        try:
            pid = int((folder / "pid").read_text())
        except (OSError, ValueError):
            pid = 0
        if (folder / "result.json").exists():
            return
        if pid and alive(pid):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        tmp = folder / "result.json.cancel"
        tmp.write_text(json.dumps({"success": False, "error": f"cancelled: {reason}"}))
        if not (folder / "result.json").exists():
            os.replace(tmp, folder / "result.json")

    def close(self) -> None:
        """Reap finished jobs; jobs still running are left to run (they record their own
        result) and kept referenced so they are reaped when this process exits."""
        for proc in self._children.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _detached.append(proc)
        self._children.clear()
