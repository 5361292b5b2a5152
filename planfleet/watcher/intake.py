"""Reading one file of the watch dir: which names count, when a file is stable, and its bytes.

Pure file-system logic, no database: :func:`read_stable` turns a name into a
:class:`~planfleet.schema.repositories.FileVersion` (read or refused) or ``None`` (gone, or not
stable yet).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
from pathlib import Path

from planfleet.schema.repositories import FileVersion

_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", ".swx", "~")


#: Endings of the task-list formats; a directory with such a name is refused, not ignored.
TASK_FILE_SUFFIXES = (".json", ".yaml", ".yml", ".md", ".markdown", ".txt", ".toml")


def is_ignored_name(name: str) -> bool:
    """Hidden and temporary names wait until they are renamed into place."""
    return (
        not name
        or name.startswith((".", "~$", "#"))
        or name.endswith(_TEMP_SUFFIXES)
    )


@dataclasses.dataclass(frozen=True)
class Seen:
    """What a stat says about a name: enough to tell whether it changed and when it settles."""

    size: int
    mtime_ns: int
    #: wall-clock seconds of the last write or metadata change (max of mtime and ctime)
    quiet_since: float
    regular: bool
    #: st_mode of the file (of the link's target for a link)
    mode: int = 0
    #: the name is a symbolic link (its target is what is read)
    link: bool = False
    #: device and inode of the file (of the link's target for a link): the file that is
    #: opened must be this one, not one swapped in after the look
    dev: int = 0
    ino: int = 0


def look(path: Path) -> Seen | None:
    """Stat ``path`` (following a link); None when it is gone."""
    try:
        lst = path.lstat()
    except OSError:
        return None
    st = lst
    if stat.S_ISLNK(lst.st_mode):
        try:
            st = path.stat()
        except OSError:
            pass  # a dangling or looping link: read_stable says why
    # a link settles when both it and its target stopped changing
    quiet_ns = max(st.st_mtime_ns, st.st_ctime_ns, lst.st_mtime_ns, lst.st_ctime_ns)
    return Seen(
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        quiet_since=quiet_ns / 1e9,
        regular=stat.S_ISREG(st.st_mode),
        mode=st.st_mode,
        link=stat.S_ISLNK(lst.st_mode),
        dev=st.st_dev,
        ino=st.st_ino,
    )


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def open_inside(root: Path, parts: tuple[str, ...]) -> int:
    """Open ``root/parts…`` for reading without following any symbolic link on the way.

    Each folder is opened relative to the one before with ``O_NOFOLLOW``: a name swapped for a
    link after it was looked at fails to open (``ELOOP``/``ENOTDIR``) instead of leading out of
    the watch dir. ``O_NONBLOCK``: a FIFO swapped in must not block the watcher.
    """
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _OPEN_FLAGS | os.O_DIRECTORY, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        return os.open(parts[-1], _OPEN_FLAGS | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _refuse(name: str, seen: Seen, reason: str) -> FileVersion:
    return FileVersion(filename=name, size=seen.size, mtime_ns=seen.mtime_ns, error=reason)


def read_stable(root: Path, name: str, seen: Seen, max_bytes: int) -> FileVersion | None:
    """Read the stable file ``root/name`` that was last seen as ``seen``.

    Returns the file's bytes and digest, a refusal with a specific reason, or None when the file
    vanished or changed while being read (the caller watches it again).
    """
    path = root / name
    inside: tuple[str, ...] = (name,)
    if seen.link:
        try:
            real = path.resolve(strict=True)
        except FileNotFoundError:
            return None
        except (OSError, RuntimeError) as exc:
            return _refuse(name, seen, f"cannot resolve symlink: {exc}")
        base = root.resolve()
        if not real.is_relative_to(base):
            return _refuse(name, seen, f"symlink points outside the watch dir (to {real})")
        inside = real.relative_to(base).parts
    kind = stat.S_IFMT(seen.mode)
    if kind == stat.S_IFDIR:
        return _refuse(name, seen, "is a directory, not a task-list file")
    if kind != stat.S_IFREG:
        return _refuse(name, seen, "not a regular file (FIFO, socket or device)")
    if seen.size > max_bytes:
        return _refuse(
            name, seen, f"file is {seen.size} bytes, over the limit of {max_bytes} bytes"
        )
    if not seen.mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH):
        # root can read anything; the watcher still honours a file's "no read" mode
        return _refuse(name, seen, f"file is not readable (mode {stat.S_IMODE(seen.mode):04o})")
    try:
        fd = open_inside(root, inside)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return None  # swapped for a link (or a directory for something else): look again
        return _refuse(name, seen, f"cannot open file: {exc.strerror or exc}")
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (seen.dev, seen.ino) or not stat.S_ISREG(
                opened.st_mode):
            return None  # not the file that was looked at: it changed, look again
        chunks: list[bytes] = []
        total = 0
        want = min(seen.size, max_bytes) + 1  # one read for a file that did not grow
        while True:
            chunk = os.read(fd, want)
            total += len(chunk)
            if total > max_bytes:
                return _refuse(
                    name, seen, f"file grew past the limit of {max_bytes} bytes while read"
                )
            chunks.append(chunk)
            if len(chunk) < want:
                break
            want = 1 << 20
        after = os.fstat(fd)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return None
        return _refuse(name, seen, f"cannot read file: {exc.strerror or exc}")
    finally:
        os.close(fd)
    if not stat.S_ISREG(after.st_mode):
        return _refuse(name, seen, "not a regular file (FIFO, socket or device)")
    if (after.st_size, after.st_mtime_ns) != (seen.size, seen.mtime_ns) or total != seen.size:
        return None  # written to while we read it: not stable after all
    content = b"".join(chunks)
    return FileVersion(
        filename=name,
        size=total,
        mtime_ns=seen.mtime_ns,
        digest=hashlib.sha256(content).hexdigest(),
        content=content,
    )
