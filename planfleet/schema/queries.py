"""Loads ``queries.sql``: named SQL blocks, parsed once at import.

A block starts with ``-- name: <name>`` followed by a ``-- <description>`` line.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    parts = _NAME.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln for ln in body.strip().splitlines() if not ln.startswith("--")]
        if name in found:
            raise ValueError(f"query {name!r} is defined twice in queries.sql")
        found[name] = "\n".join(lines).strip().rstrip(";")
    return found


QUERIES: dict[str, str] = _parse(
    resources.files("planfleet.schema").joinpath("queries.sql").read_text("utf-8")
)


def get(name: str) -> str:
    """The SQL of query ``name``."""
    return QUERIES[name]
