"""The local runner: Windmill-style scripts (a file with ``def main(...)``) run on this machine.

Each job gets a folder ``<root>/<job id>/`` holding its spec, pid, log and result, so any
process (a restarted build worker included) can tell what a job id did. Creating the folder's
``spawn.lock`` exclusively is the submission: a second submit of the same id does nothing, as
Windmill answers ``400 already exists``. Jobs are forked by a warm executor process
(:mod:`planfleet.dispatch.local_exec` ``--serve``) and run in their own session, so a build
worker that dies leaves its running jobs to finish and record their results.
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

from planfleet import script_paths
from planfleet.dispatch import DispatchError, JobState, JobStatus, Submission, submit_each
from planfleet.processes import alive

#: Seconds a submitted job may lack a pid before it counts as never started.
LOST_AFTER = 15.0

#: An executor started by a worker before it forks its work horses (see start_shared_executor).
_shared: subprocess.Popen[bytes] | None = None


def _spawn_executor(cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "planfleet.dispatch.local_exec", "--serve"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=str(cwd),
    )


def start_shared_executor(cwd: Path) -> None:
    """Start one executor in a worker process, for every work horse it forks to share (a
    horse writes to the inherited pipe); saves a Python start-up per build."""
    global _shared
    if _shared is None:
        _shared = _spawn_executor(cwd)


class LocalDispatcher:
    """Runs ``<scripts_dir>/<path>.py`` in a subprocess per job."""

    def __init__(self, scripts_dir: Path, root: Path) -> None:
        self.scripts_dir = scripts_dir
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._exec: subprocess.Popen[bytes] | None = None

    def script_file(self, script: str) -> Path:
        why = script_paths.problem(script)
        if why is not None:  # Windmill's grammar, as for Windmill (and no ENAMETOOLONG)
            raise DispatchError(f"refused to run the script: {why}", permanent=True)
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
                "submitted_at": time.time(), "scripts_dir": str(self.scripts_dir.resolve())}
        (folder / "spec.json").write_text(json.dumps(spec, default=str))
        line = f"{folder}\n".encode()
        if _shared is not None and _shared.stdin is not None:
            try:
                _shared.stdin.write(line)
                _shared.stdin.flush()
                return
            except (BrokenPipeError, OSError):
                pass  # the shared executor is gone: use one of our own
        for _ in range(2):
            executor = self._executor()
            try:
                assert executor.stdin is not None
                executor.stdin.write(line)
                executor.stdin.flush()
                return
            except (BrokenPipeError, OSError):
                self._stop_executor()  # it died: start another and hand the job to it
        raise DispatchError("the local executor does not take jobs")

    def _executor(self) -> subprocess.Popen[bytes]:
        if self._exec is None or self._exec.poll() is not None:
            self._exec = _spawn_executor(self.scripts_dir)
        return self._exec

    def _stop_executor(self) -> None:
        if self._exec is not None:
            if self._exec.stdin is not None:
                try:
                    self._exec.stdin.close()
                except OSError:
                    pass
            try:
                self._exec.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._exec.kill()
                self._exec.wait()
            self._exec = None

    def _one(self, job_id: uuid.UUID) -> JobStatus:
        folder = self.root / str(job_id)
        link = str(folder / "log.txt")
        result_file = folder / "result.json"
        if result_file.exists():
            data = json.loads(result_file.read_text())
            return JobStatus(
                JobState.SUCCESS if data.get("success") else JobState.FAILURE,
                result=data.get("result"), error=data.get("error"),
                duration=data.get("duration"), link=link, error_type=data.get("error_type"),
            )
        lock = folder / "spawn.lock"
        try:
            submitted = lock.stat().st_mtime
        except FileNotFoundError:
            return JobStatus(JobState.UNKNOWN)
        try:
            pid = int((folder / "pid").read_text())
        except (OSError, ValueError):
            if time.time() - submitted > LOST_AFTER:
                # handed to an executor that died before forking it: never started
                lock.unlink(missing_ok=True)
                return JobStatus(JobState.UNKNOWN)
            return JobStatus(JobState.QUEUED, link=link)
        if alive(pid):
            return JobStatus(JobState.RUNNING, link=link)
        if result_file.exists():  # finished between the two looks
            return self._one(job_id)
        return JobStatus(JobState.FAILURE, error="the script process died without a result",
                         link=link)

    def submit_many(self, jobs: Sequence[Submission]) -> dict[uuid.UUID, DispatchError | None]:
        return submit_each(self, jobs)

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
        """Stop the executor; jobs it started go on and record their own results."""
        self._stop_executor()
