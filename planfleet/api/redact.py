"""Texts shown to API clients without the server's absolute paths (where the fleet is
installed, its state dir, the watch dir): a step's error keeps the file name it is about."""

from __future__ import annotations

import re

# an absolute path: a '/' not inside a word, a URL (``://``) or a relative script path
# (``f/team/script``), followed by at least one more segment
_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"():,;<>\[\]]+/)+([^\s/'\"():,;<>\[\]]*)")


def paths(text: str | None) -> str | None:
    """``text`` with each absolute path cut to ``…/`` and its last part."""
    if text is None:
        return None
    return _PATH.sub(lambda m: f"…/{m.group(1)}", text)
