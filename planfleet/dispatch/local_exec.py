"""Runs local jobs: ``python -m planfleet.dispatch.local_exec JOB_DIR`` runs one;
``python -m planfleet.dispatch.local_exec --serve`` reads job folders from stdin, one a line,
and forks a child per job (a warm interpreter: a job costs a fork, not a Python start-up).
Each job child starts its own session, writes its pid, runs, and writes its result, so it
finishes and records its outcome even when the process that asked for it has died.

Imports the script file named in ``JOB_DIR/spec.json``, calls its ``main`` with the arguments
its signature accepts, and writes ``result.json`` (atomically) with the return value or the
error. The timeout is an alarm: a script past it fails with a timeout error.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any


class StepTimeout(Exception):
    """The script ran past its timeout."""


def _accepted(main: Any, args: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(main).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return args
    return {k: v for k, v in args.items() if k in params}


def run(folder: Path) -> dict[str, Any]:
    spec = json.loads((folder / "spec.json").read_text())
    timeout = float(spec.get("timeout") or 0)

    def on_alarm(*_: object) -> None:
        raise StepTimeout(f"timed out after {timeout:g} s")

    started = time.time()
    if importlib.util.find_spec("wmill") is None and spec.get("scripts_dir"):
        # scripts that start other scripts get them started here, as local jobs
        from planfleet.dispatch import local_wmill

        local_wmill.configure(Path(spec["scripts_dir"]), folder.parent)
        sys.modules["wmill"] = local_wmill
    try:
        module_spec = importlib.util.spec_from_file_location("windmill_script", spec["file"])
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        main = getattr(module, "main", None)
        if not callable(main):
            raise TypeError(f"{spec['script']} has no main function")
        if timeout > 0:
            signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        value = main(**_accepted(main, spec["args"]))
        signal.setitimer(signal.ITIMER_REAL, 0)
        json.dumps(value)  # the result must be JSON, as Windmill's
        return {"success": True, "result": value, "duration": time.time() - started}
    except BaseException as exc:  # noqa: BLE001 - every failure is the job's result
        signal.setitimer(signal.ITIMER_REAL, 0)
        traceback.print_exc()
        return {
            "success": False,
            "error": f"{type(exc).__name__}: {exc}",
            "error_type": "timeout" if isinstance(exc, StepTimeout) else type(exc).__name__,
            "duration": time.time() - started,
        }


def _finish(folder: Path, outcome: dict[str, Any]) -> None:
    tmp = folder / f"result.json.{os.getpid()}"
    tmp.write_text(json.dumps(outcome, default=str))
    if not (folder / "result.json").exists():  # a cancel may have written it first
        os.replace(tmp, folder / "result.json")
    else:
        tmp.unlink()


def _run_job(folder: Path) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    _finish(folder, run(folder))


def serve() -> None:
    """Fork a child per job folder read from stdin, until stdin closes."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    for line in sys.stdin:
        folder = Path(line.strip())
        if not line.strip():
            continue
        pid = os.fork()
        if pid:
            continue
        # the job child
        try:
            os.setsid()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            log = os.open(folder / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.chdir(folder)
            (folder / "pid").write_text(str(os.getpid()))
            _run_job(folder)
        finally:
            os._exit(0)


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    folder = Path(sys.argv[1])
    (folder / "pid").write_text(str(os.getpid()))
    _run_job(folder)


if __name__ == "__main__":
    main()
