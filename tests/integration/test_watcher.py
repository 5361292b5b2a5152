"""The watcher against real files, real Postgres and real Redis."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import rq
from rq.serializers import JSONSerializer

from planfleet import models, queues
from planfleet.config import Config
from planfleet.schema.repositories import Store
from planfleet.watcher import Watcher
from tests.conftest import stays, wait_for

WINDOW = 0.3
#: How long a negative assertion watches: five stability windows, far more than a file takes
#: from its last change to its row (a window, a tick, a commit)
SETTLED = WINDOW * 5


class RunningWatcher:
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.watcher.run(self.stop_event)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the fixture
            self.errors.append(exc)

    def start(self) -> RunningWatcher:
        self.thread.start()
        wait_for(lambda: self.watcher._root is not None and self.watcher._observer is not None)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "watcher did not stop"
        assert not self.errors, self.errors


@pytest.fixture
def watch_dir(tmp_path: Path) -> Path:
    d = tmp_path / "input"
    d.mkdir()
    return d


@pytest.fixture
def start_watcher(
    database_url: str, redis_url: str, watch_dir: Path
) -> Iterator[Callable[..., RunningWatcher]]:
    running: list[RunningWatcher] = []
    stores: list[Store] = []

    def start(**overrides: object) -> RunningWatcher:
        config = Config(
            database_url=database_url,
            redis_url=redis_url,
            watch_dir=watch_dir,
            stability_window=overrides.pop("stability_window", WINDOW),
            watch_tick=0.02,
            **overrides,
        )
        store = Store.from_url(database_url)
        stores.append(store)
        w = RunningWatcher(Watcher(config, store, queues.Queues(queues.connect(redis_url))))
        running.append(w)
        return w.start()

    yield start
    for w in running:
        if w.thread.is_alive():
            w.stop()
    for s in stores:
        s.close()


def rows(database_url: str, sql: str = "SELECT * FROM pending_inputs ORDER BY id") -> list[dict]:
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def count(database_url: str, sql: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return int(row[0])


def plan_queue_ids(conn: redis.Redis) -> list[int]:
    q = rq.Queue("plan_queue", connection=conn, serializer=JSONSerializer)
    return sorted(job.args[0] for job in q.get_jobs())


def test_slow_chunked_write_is_recorded_once_and_complete(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    # Given a watcher with a 1 s stability window
    start_watcher(stability_window=1.0)
    # When a file is written in chunks over 3 s
    body = b"".join(f"  - id: T{i}\n".encode() for i in range(30))
    with open(watch_dir / "slow.yaml", "wb") as fh:
        for i in range(0, len(body), len(body) // 15):
            fh.write(body[i : i + len(body) // 15])
            fh.flush()
            time.sleep(0.2)
    # Then it is recorded once, with every byte
    wait_for(lambda: rows(database_url), timeout=5)
    stays(lambda: len(rows(database_url)) == 1, 3.0)  # three of its 1 s windows
    recorded = rows(database_url)
    assert len(recorded) == 1
    assert bytes(recorded[0]["content"]) == body
    assert recorded[0]["size"] == len(body)


def test_thousand_files_at_once_are_all_recorded_exactly_once(
    start_watcher: Callable[..., RunningWatcher],
    watch_dir: Path,
    database_url: str,
    redis_conn: redis.Redis,
) -> None:
    start_watcher()
    for i in range(1000):
        (watch_dir / f"f{i:04}.json").write_text(f'{{"tasks": [{{"id": "T{i}"}}]}}')
    wait_for(lambda: count(database_url, "SELECT count(*) FROM pending_inputs") >= 1000, 30)
    stays(lambda: count(database_url, "SELECT count(*) FROM pending_inputs") == 1000, SETTLED)
    recorded = rows(database_url, "SELECT filename, status FROM pending_inputs")
    assert sorted(r["filename"] for r in recorded) == [f"f{i:04}.json" for i in range(1000)]
    assert {r["status"] for r in recorded} == {"queued"}
    # and each is enqueued once for planning
    wait_for(lambda: len(plan_queue_ids(redis_conn)) >= 1000, timeout=30)
    stays(lambda: redis_conn.llen("rq:queue:plan_queue") == 1000, 1.0)
    ids = plan_queue_ids(redis_conn)
    assert len(ids) == 1000 and len(set(ids)) == 1000


def test_files_present_before_start_are_recorded(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    (watch_dir / "early.yaml").write_text("tasks: [{id: A}]\n")
    (watch_dir / "early2.json").write_text('{"tasks": [{"id": "B"}]}')
    start_watcher()
    wait_for(lambda: len(rows(database_url)) == 2)
    assert {r["filename"] for r in rows(database_url)} == {"early.yaml", "early2.json"}


def test_rename_into_place_records_the_final_name_only(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    start_watcher()
    tmp = watch_dir / "plan.yaml.tmp"
    hidden = watch_dir / ".plan2.yaml"
    tmp.write_text("tasks: [{id: A}]\n")
    hidden.write_text("tasks: [{id: B}]\n")
    stays(lambda: rows(database_url) == [], SETTLED)
    tmp.rename(watch_dir / "plan.yaml")
    hidden.rename(watch_dir / "plan2.yaml")
    wait_for(lambda: len(rows(database_url)) == 2)
    assert sorted(r["filename"] for r in rows(database_url)) == ["plan.yaml", "plan2.yaml"]


def test_the_same_content_again_in_a_source_is_a_duplicate_event(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    start_watcher()
    (watch_dir / "a.yaml").write_text("tasks: [{id: A}]\n")
    wait_for(lambda: len(rows(database_url)) == 1)
    # written again with the same bytes: the latest version of file:a.yaml already
    (watch_dir / "a.yaml").write_text("tasks: [{id: A}]\n")
    os.utime(watch_dir / "a.yaml", ns=(1, 1))
    wait_for(
        lambda: count(database_url, "SELECT count(*) FROM events WHERE kind='input_duplicate'")
    )
    assert len(rows(database_url)) == 1
    # the same bytes under another name are the first version of that name's source
    (watch_dir / "b.yaml").write_text("tasks: [{id: A}]\n")
    wait_for(lambda: len(rows(database_url)) == 2)
    # a changed file under the same name is a new version
    (watch_dir / "a.yaml").write_text("tasks: [{id: A}, {id: B}]\n")
    wait_for(lambda: len(rows(database_url)) == 3)
    assert count(database_url, "SELECT count(DISTINCT source) FROM pending_inputs") == 2


def test_overwrite_and_delete_after_recording_lose_nothing(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    start_watcher()
    f = watch_dir / "requirements.yaml"
    f.write_bytes(b"tasks: [{id: ORIGINAL}]\n")
    wait_for(lambda: len(rows(database_url)) == 1)
    f.write_bytes(b"tasks: [{id: NEW}]\n")
    wait_for(lambda: len(rows(database_url)) == 2)
    f.unlink()
    stays(lambda: len(rows(database_url)) == 2, SETTLED)
    contents = [bytes(r["content"]) for r in rows(database_url)]
    assert contents == [b"tasks: [{id: ORIGINAL}]\n", b"tasks: [{id: NEW}]\n"]


def test_file_deleted_before_stable_leaves_nothing(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    w = start_watcher(stability_window=1.0)
    f = watch_dir / "gone.yaml"
    f.write_text("tasks: []\n")
    wait_for(lambda: len(w.watcher.tracker) == 1)  # seen, not yet stable
    f.unlink()
    stays(lambda: rows(database_url) == [], 3.0)  # three of its 1 s windows
    assert count(database_url, "SELECT count(*) FROM events") == 0
    assert len(w.watcher.tracker) == 0


def test_refusals_are_failed_inputs_with_specific_errors(
    start_watcher: Callable[..., RunningWatcher],
    watch_dir: Path,
    tmp_path: Path,
    database_url: str,
) -> None:
    outside = tmp_path / "secret.yaml"
    outside.write_text("tasks: [{id: S}]\n")
    start_watcher(max_file_bytes=1000)
    (watch_dir / "big.json").write_bytes(b"x" * 1001)
    locked = watch_dir / "locked.yaml"
    locked.write_text("tasks: [{id: L}]\n")
    locked.chmod(0)
    (watch_dir / "escape.yaml").symlink_to(outside)
    os.mkfifo(watch_dir / "pipe.json")
    (watch_dir / "tasks.json").mkdir()
    (watch_dir / "archive").mkdir()
    (watch_dir / "ok.yaml").write_text("tasks: [{id: OK}]\n")
    wait_for(lambda: len(rows(database_url)) == 6)
    stays(lambda: len(rows(database_url)) == 6, SETTLED)
    by_name = {r["filename"]: r for r in rows(database_url)}
    assert set(by_name) == {
        "big.json", "locked.yaml", "escape.yaml", "pipe.json", "tasks.json", "ok.yaml"
    }
    assert "over the limit of 1000 bytes" in by_name["big.json"]["error"]
    assert by_name["big.json"]["content"] is None
    assert "not readable" in by_name["locked.yaml"]["error"]
    assert "outside the watch dir" in by_name["escape.yaml"]["error"]
    assert "not a regular file" in by_name["pipe.json"]["error"]
    assert "is a directory" in by_name["tasks.json"]["error"]
    for name in ("big.json", "locked.yaml", "escape.yaml", "pipe.json", "tasks.json"):
        assert by_name[name]["status"] == "failed"
    assert by_name["ok.yaml"]["status"] == "queued"
    assert count(database_url, "SELECT count(*) FROM events WHERE kind='input_refused'") == 5


def test_symlink_inside_the_dir_is_followed(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    (watch_dir / "sub").mkdir()
    (watch_dir / "sub" / "real.yaml").write_text("tasks: [{id: R}]\n")
    (watch_dir / "link.yaml").symlink_to(watch_dir / "sub" / "real.yaml")
    start_watcher()
    wait_for(lambda: len(rows(database_url)) == 1)
    (row,) = rows(database_url)
    assert row["filename"] == "link.yaml" and row["status"] == "queued"


@pytest.mark.parametrize("auto_plan", [True, False])
def test_auto_plan_decides_the_enqueue(
    auto_plan: bool,
    start_watcher: Callable[..., RunningWatcher],
    watch_dir: Path,
    database_url: str,
    redis_conn: redis.Redis,
    store: Store,
) -> None:
    store.settings.update(auto_plan=auto_plan)
    start_watcher()
    (watch_dir / "t.yaml").write_text("tasks: [{id: A}]\n")
    wait_for(lambda: rows(database_url))
    (row,) = rows(database_url)
    if auto_plan:
        assert row["status"] == models.InputStatus.QUEUED
        wait_for(lambda: plan_queue_ids(redis_conn) == [row["id"]], timeout=10)
    else:
        assert row["status"] == models.InputStatus.PENDING
        stays(lambda: plan_queue_ids(redis_conn) == [], SETTLED)


def test_two_watchers_record_each_file_once(
    start_watcher: Callable[..., RunningWatcher],
    watch_dir: Path,
    database_url: str,
    redis_conn: redis.Redis,
) -> None:
    start_watcher()
    start_watcher()
    for i in range(200):
        (watch_dir / f"t{i}.json").write_text(f'{{"tasks": [{{"id": "T{i}"}}]}}')
    wait_for(lambda: count(database_url, "SELECT count(*) FROM pending_inputs") >= 200, 20)
    stays(lambda: count(database_url, "SELECT count(*) FROM pending_inputs") == 200, SETTLED)
    assert count(database_url, "SELECT count(*) FROM events WHERE kind='input_duplicate'") == 0
    wait_for(lambda: len(plan_queue_ids(redis_conn)) >= 200, timeout=20)
    stays(lambda: redis_conn.llen("rq:queue:plan_queue") == 200, 1.0)


def test_restart_does_not_record_or_announce_again(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    first = start_watcher()
    (watch_dir / "a.yaml").write_text("tasks: [{id: A}]\n")
    (watch_dir / "b.yaml").write_text("tasks: [{id: A}]\n")
    wait_for(lambda: count(database_url, "SELECT count(*) FROM input_files") == 2)
    first.stop()
    events = count(database_url, "SELECT count(*) FROM events")
    second = start_watcher()
    second.watcher.scan(time.time())
    stays(lambda: count(database_url, "SELECT count(*) FROM pending_inputs") == 2
          and count(database_url, "SELECT count(*) FROM events") == events, SETTLED)


def test_watch_dir_setting_moves_the_watcher(
    start_watcher: Callable[..., RunningWatcher],
    tmp_path: Path,
    database_url: str,
    store: Store,
) -> None:
    w = start_watcher(watch_root=tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()  # the watcher creates no folder for the setting
    store.settings.update(watch_dir=str(other), set_watch_dir=True)
    wait_for(lambda: w.watcher._root == other.resolve(), timeout=5)
    (other / "moved.yaml").write_text("tasks: [{id: M}]\n")
    wait_for(lambda: rows(database_url))
    assert rows(database_url)[0]["source_dir"] == str(other.resolve())


def test_a_name_that_is_not_utf8_is_recorded_with_its_bytes_and_the_watcher_goes_on(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    # Given a running watcher
    w = start_watcher()
    # When files whose names are not UTF-8 (as zip archives produce) are dropped, a good one,
    # a refused one (a directory with a task-file ending), and then an ordinary file
    odd = b"latin1-\xe9t\xe9.json"
    with open(os.path.join(os.fsencode(watch_dir), odd), "wb") as fh:
        fh.write(b'{"tasks": [{"id": "A"}]}')
    os.mkdir(os.path.join(os.fsencode(watch_dir), b"dir-\xff.yaml"))
    wait_for(lambda: len(rows(database_url)) == 2, timeout=10)
    (watch_dir / "after.yaml").write_text("tasks: [{id: B}]\n")
    wait_for(lambda: len(rows(database_url)) == 3, timeout=10)
    # Then each is recorded, shown escaped and kept as its exact bytes; nothing died
    by_name = {r["filename"]: r for r in rows(database_url)}
    assert set(by_name) == {"latin1-\\xe9t\\xe9.json", "dir-\\xff.yaml", "after.yaml"}
    assert bytes(by_name["latin1-\\xe9t\\xe9.json"]["filename_bytes"]) == odd
    assert by_name["latin1-\\xe9t\\xe9.json"]["status"] == "queued"
    assert by_name["dir-\\xff.yaml"]["status"] == "failed"
    assert "is a directory" in by_name["dir-\\xff.yaml"]["error"]
    assert by_name["after.yaml"]["filename_bytes"] is None
    assert w.thread.is_alive() and not w.errors
    # And a restarted watcher knows them (their bytes map back to the same names)
    w.stop()
    again = start_watcher()
    again.watcher.scan(time.time())
    time.sleep(WINDOW * 3)
    assert len(rows(database_url)) == 3


def test_a_file_that_cannot_be_recorded_is_refused_alone_and_the_watcher_goes_on(
    start_watcher: Callable[..., RunningWatcher], watch_dir: Path, database_url: str
) -> None:
    # Given a store that fails in an unexpected way on one file's bytes
    w = start_watcher()
    repo = w.watcher.store.inputs
    real = repo.record_files

    def picky(source_dir: str, files: list[Any], *, queue: bool) -> list[Any]:
        if any(f.content and b"POISON" in f.content for f in files):
            raise ValueError("cannot adapt this value")
        return real(source_dir, files, queue=queue)

    repo.record_files = picky  # type: ignore[method-assign]
    # When it is dropped with others
    (watch_dir / "poison.yaml").write_text("tasks: [{id: POISON}]\n")
    (watch_dir / "good.yaml").write_text("tasks: [{id: GOOD}]\n")
    wait_for(lambda: len(rows(database_url)) == 2, timeout=10)
    # Then it alone is refused with the reason, the other is recorded, the watcher lives on
    by_name = {r["filename"]: r for r in rows(database_url)}
    assert by_name["good.yaml"]["status"] == "queued"
    assert by_name["poison.yaml"]["status"] == "failed"
    assert "could not be recorded: ValueError: cannot adapt" in by_name["poison.yaml"]["error"]
    (watch_dir / "later.yaml").write_text("tasks: [{id: LATER}]\n")
    wait_for(lambda: len(rows(database_url)) == 3, timeout=10)
    assert w.thread.is_alive() and not w.errors
