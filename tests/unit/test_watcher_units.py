"""Pure parts of the watcher: names, the stability schedule, the handler, the file reader."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest
from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)

from planfleet.watcher import intake
from planfleet.watcher.service import _Handler
from planfleet.watcher.tracker import StabilityTracker


@pytest.mark.parametrize(
    "name", [".hidden.yaml", "x.tmp", "x.part", "x~", "x.yaml.swp", "~$x.yaml", "#x#", ""]
)
def test_temporary_and_hidden_names_are_ignored(name: str) -> None:
    assert intake.is_ignored_name(name)


@pytest.mark.parametrize("name", ["tasks.yaml", "SAM.json", "tasks.md", "notes"])
def test_ordinary_names_count(name: str) -> None:
    assert not intake.is_ignored_name(name)


def seen(quiet_since: float, size: int = 1, mtime_ns: int = 1) -> intake.Seen:
    return intake.Seen(size=size, mtime_ns=mtime_ns, quiet_since=quiet_since, regular=True)


def test_tracker_waits_out_the_window_from_the_last_change() -> None:
    t = StabilityTracker(window=1.0, tick=0.1)
    t.touch("a", now=100.0)
    assert t.due(100.0) == ["a"]
    assert t.observe("a", seen(quiet_since=100.0), now=100.0) is False
    assert t.due(100.5) == []
    assert t.due(101.0) == ["a"]
    # written again at 100.8: still not stable at 101.0, due at 101.8
    assert t.observe("a", seen(quiet_since=100.8, size=2), now=101.0) is False
    assert t.due(101.7) == [] and t.due(101.8) == ["a"]
    assert t.observe("a", seen(quiet_since=100.8, size=2), now=101.8) is True
    assert "a" not in t and len(t) == 0


def test_tracker_records_old_files_at_once_and_distrusts_future_timestamps() -> None:
    t = StabilityTracker(window=1.0, tick=0.1)
    assert t.observe("old", seen(quiet_since=10.0), now=100.0) is True
    t.touch("future", now=100.0)
    assert t.observe("future", seen(quiet_since=5000.0), now=100.0) is False
    assert t.observe("future", seen(quiet_since=5000.0), now=101.0) is True


def test_tracker_forget_drops_a_candidate() -> None:
    t = StabilityTracker(window=1.0, tick=0.1)
    t.touch("a", 1.0)
    t.forget("a")
    assert t.due(10.0) == []


def test_handler_ignores_open_and_close_without_write_and_splits_moves() -> None:
    inbox: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    h = _Handler(inbox)
    for ev in [
        FileOpenedEvent("/d/a"),
        FileClosedNoWriteEvent("/d/a"),
        FileCreatedEvent("/d/b"),
        FileClosedEvent("/d/b"),
        FileMovedEvent("/d/c.tmp", "/d/c"),
        FileDeletedEvent("/d/e"),
    ]:
        h.dispatch(ev)
    got = []
    while not inbox.empty():
        got.append(inbox.get())
    assert got == [
        ("changed", "/d/b"),
        ("changed", "/d/b"),
        ("deleted", "/d/c.tmp"),
        ("changed", "/d/c"),
        ("deleted", "/d/e"),
    ]


def test_read_stable_notices_a_write_during_the_read(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_bytes(b"abc")
    before = intake.look(f)
    assert before is not None
    f.write_bytes(b"abcdef")
    assert intake.read_stable(tmp_path, "a.yaml", before, 100) is None
    now = intake.look(f)
    assert now is not None
    got = intake.read_stable(tmp_path, "a.yaml", now, 100)
    assert got is not None and got.content == b"abcdef" and got.error is None
    assert got.digest == "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721"


def test_read_stable_refuses_oversize_without_reading(tmp_path: Path) -> None:
    f = tmp_path / "big.json"
    with open(f, "wb") as fh:
        fh.truncate(10**9)  # sparse: reading it would take a while
    s = intake.look(f)
    assert s is not None
    got = intake.read_stable(tmp_path, "big.json", s, 16 * 2**20)
    assert got is not None and got.content is None
    assert got.error == f"file is {10**9} bytes, over the limit of {16 * 2**20} bytes"


def test_read_stable_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p.json")
    s = intake.look(tmp_path / "p.json")
    assert s is not None and not s.regular
    got = intake.read_stable(tmp_path, "p.json", s, 100)
    assert got is not None and "not a regular file" in (got.error or "")


def test_a_change_event_postpones_the_check_by_a_window() -> None:
    t = StabilityTracker(window=1.0, tick=0.1)
    t.touch("a", now=10.0)
    t.touch("a", now=10.2, changed=True)
    assert t.due(11.1) == [] and t.due(11.2) == ["a"]
    # a plain touch (a rescan) does not postpone a pending check
    t.touch("a", now=10.5)
    assert t.due(10.5) == ["a"]


def _secret(tmp_path: Path, like: Path) -> Path:
    """A file outside the watch dir with the size and mtime of ``like`` (as an attacker who
    swaps names would wish)."""
    secret = tmp_path / "secret.yaml"
    secret.write_bytes(b"X" * like.stat().st_size)
    st = like.stat()
    os.utime(secret, ns=(st.st_atime_ns, st.st_mtime_ns))
    return secret


def test_a_file_swapped_for_a_symlink_after_the_look_is_not_followed(tmp_path: Path) -> None:
    # Given a file in the watch dir that was looked at
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "a.yaml"
    f.write_text("tasks: [{id: A}]\n")
    s = intake.look(f)
    assert s is not None
    secret = _secret(tmp_path, f)
    # When it is swapped for a link to a file outside before it is read
    f.unlink()
    f.symlink_to(secret)
    # Then the outside file is not read: the name is looked at again
    assert intake.read_stable(inbox, "a.yaml", s, 100) is None


def test_a_file_swapped_for_another_file_after_the_look_is_not_read(tmp_path: Path) -> None:
    # Given a file that was looked at, then replaced by another (same size and mtime)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    f = inbox / "a.yaml"
    f.write_text("tasks: [{id: A}]\n")
    s = intake.look(f)
    assert s is not None
    other = _secret(tmp_path, f)
    os.replace(other, f)
    # Then the new file is not taken for the one that was looked at
    assert intake.read_stable(inbox, "a.yaml", s, 100) is None


def test_a_link_inside_whose_folder_is_swapped_for_a_link_outside_is_not_followed(
    tmp_path: Path,
) -> None:
    # Given a link to a file in a sub-folder of the watch dir, looked at
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    target = inbox / "sub" / "t.yaml"
    target.write_text("tasks: [{id: A}]\n")
    (inbox / "l.yaml").symlink_to(target)
    s = intake.look(inbox / "l.yaml")
    assert s is not None and s.link
    assert intake.read_stable(inbox, "l.yaml", s, 100) is not None  # it is read as it is
    # When the sub-folder is swapped for a link to a folder outside after the resolve
    outside = tmp_path / "outside"
    outside.mkdir()
    _secret(tmp_path, target).rename(outside / "t.yaml")
    real_resolve = Path.resolve

    def resolve_then_swap(self: Path, strict: bool = False) -> Path:
        got = real_resolve(self, strict=strict)
        if self.name == "l.yaml":
            (inbox / "sub" / "t.yaml").unlink()
            (inbox / "sub").rmdir()
            (inbox / "sub").symlink_to(outside)
        return got

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "resolve", resolve_then_swap)
        got = intake.read_stable(inbox, "l.yaml", s, 100)
    # Then nothing outside is read
    assert got is None


def test_swapping_a_name_for_a_symlink_in_a_loop_never_reads_the_outside_file(
    tmp_path: Path,
) -> None:
    # Given a writer that keeps swapping a name between a file and a link to a secret
    import threading

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    secret = tmp_path / "secret.yaml"
    secret.write_bytes(b"SECRET: root only\n")
    # the attacker's own file: the secret's size and mtime (both can be read with stat)
    body = b"tasks: [{id: A}]\n".ljust(secret.stat().st_size, b" ")
    mtime = secret.stat().st_mtime_ns
    name = inbox / "swap.yaml"
    stop = threading.Event()

    def swapper() -> None:
        i = 0
        while not stop.is_set():
            tmp = inbox / f".tmp{i % 2}"
            if i % 2:
                tmp.write_bytes(body)
                os.utime(tmp, ns=(mtime, mtime))
            else:
                tmp.symlink_to(secret)
            os.replace(tmp, name)
            i += 1

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        # When the watcher looks at and reads it 2,000 times
        for _ in range(2000):
            s = intake.look(name)
            if s is None:
                continue
            got = intake.read_stable(inbox, "swap.yaml", s, 1000)
            # Then it never holds the secret's bytes (a link outside is refused or skipped)
            if got is not None and got.content is not None:
                assert b"SECRET" not in got.content
    finally:
        stop.set()
        thread.join()
