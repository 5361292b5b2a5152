"""Which folders ``watch_dir`` (the run-time setting) may name: the watch root
(``PLANFLEET_WATCH_ROOT``, default the working directory) or a folder inside it, existing
already. Whoever holds the API token chooses the setting; the watcher, often root, reads
every file of that folder, so the setting must not reach /etc or create folders."""

from __future__ import annotations

import os
from pathlib import Path

from planfleet import exceptions
from planfleet.config import Config


def watch_root(config: Config) -> Path:
    """The folder every ``watch_dir`` must be inside (resolved)."""
    return Path(config.watch_root or Path.cwd()).expanduser().resolve()


def watch_dir(value: str, root: Path) -> Path:
    """The folder ``value`` names (relative: to ``root``), resolved, symlinks followed.

    Raises
    ------
    InvalidSetting
        ``value`` has a NUL, is outside ``root``, does not exist or is not a folder.
    """
    if "\x00" in value:
        raise exceptions.InvalidSetting("watch_dir has a NUL character")
    given = Path(value).expanduser()
    path = given if given.is_absolute() else root / given
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise exceptions.InvalidSetting(
            f"watch_dir {value!r} does not exist (planfleet creates no folder for it)") from None
    except (OSError, RuntimeError) as exc:
        raise exceptions.InvalidSetting(f"watch_dir {value!r}: {exc}") from None
    if resolved != root and root not in resolved.parents:
        raise exceptions.InvalidSetting(
            f"watch_dir {value!r} is outside the watch root {root} (PLANFLEET_WATCH_ROOT)")
    if not resolved.is_dir():
        raise exceptions.InvalidSetting(f"watch_dir {value!r} is not a folder")
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise exceptions.InvalidSetting(f"watch_dir {value!r} cannot be read")
    return resolved
