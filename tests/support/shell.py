"""A user's shell for tests that run commands as a person would."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def user_env() -> dict[str, str]:
    """The test process's environment as a user's shell has it: no venv on PATH, no
    PYTHONPATH, none of the tests' or planfleet's variables; package-index, certificate and
    proxy settings kept (installs from PyPI need them)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SHELL")
    env = {k: v for k, v in os.environ.items()
           if k in keep or k.startswith(("PIP_", "UV_", "SSL_", "REQUESTS_CA", "CURL_CA"))
           or k.lower().endswith("_proxy")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not p.startswith(str(ROOT)))
    return env
