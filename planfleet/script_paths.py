"""Windmill script paths that a task file may name, checked when planning and again when
dispatching (pure: no I/O).

A task file is untrusted: its ``script``, ``solvers.*.script``, ``solvers.*.qa`` and ``qa`` go
into ``POST /api/w/{workspace}/jobs/run/p/{path}`` with the fleet's Windmill token. Only
Windmill's own grammar is accepted (``u/<user>/…`` or ``f/<folder>/…``, segments of letters,
digits, ``_`` and ``-``), so that no path can climb (``..``) to another endpoint; and only the
scripts of the fleet's allow-list (``PLANFLEET_ALLOWED_SCRIPTS``) may run.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from planfleet import defaults

#: Longest script path accepted (Windmill's own limit is 255).
MAX_LENGTH = 255
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def problem(path: object) -> str | None:
    """Why ``path`` is not a Windmill script path (None: it is one)."""
    if not isinstance(path, str):
        return f"must be a script path such as f/folder/name, got {type(path).__name__}"
    if len(path) > MAX_LENGTH:
        return f"script path is {len(path)} characters long (at most {MAX_LENGTH})"
    parts = path.split("/")
    if len(parts) < 3 or parts[0] not in ("u", "f"):
        return (f"script path {_shown(path)} must start with u/<user>/ or f/<folder>/ "
                "and name a script (such as f/planner/solver_dispatch)")
    for part in parts[1:]:
        if not _SEGMENT.fullmatch(part):
            return (f"script path {_shown(path)} has a segment {_shown(part)} that is not "
                    "letters, digits, '_' or '-'")
    return None


def check(path: object) -> str:
    """``path`` when it is a Windmill script path; ValueError saying why otherwise."""
    why = problem(path)
    if why is not None:
        raise ValueError(why)
    assert isinstance(path, str)
    return path


def allowed(path: str, patterns: Sequence[str]) -> bool:
    """Whether ``path`` matches one of the allow-list's globs (``f/agents/*``)."""
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def parse_patterns(text: str) -> tuple[str, ...]:
    """Globs from ``PLANFLEET_ALLOWED_SCRIPTS`` (separated by commas or white space)."""
    return tuple(p for p in re.split(r"[,\s]+", text) if p)


def default_patterns(scripts_dir: Path, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The allow-list when none is configured: the scripts under the scripts folder (as the
    local runner would run them), the fleet's default script, and ``extra`` (scripts the fleet
    registers for solvers)."""
    found = {defaults.DEFAULT_SCRIPT, *extra}
    for folder in ("f", "u"):
        for p in (scripts_dir / folder).glob("**/*.py"):
            found.add(p.relative_to(scripts_dir).with_suffix("").as_posix())
    # a file name may hold glob characters: match it as itself
    return tuple(sorted(re.sub(r"([*?\[])", r"[\1]", f) for f in found))


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")
