"""The watcher sidecar: watchdog events, a start-up scan and periodic rescans feed a stability
tracker; stable files are read and recorded in Postgres in batches, then enqueued for planning
when ``auto_plan`` is on."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from planfleet import confine, defaults, exceptions, models, names
from planfleet.backoff import Backoff
from planfleet.config import Config
from planfleet.queues import Queues
from planfleet.schema.repositories import FileVersion, Store
from planfleet.watcher import intake
from planfleet.watcher.enqueuer import Enqueuer
from planfleet.watcher.tracker import StabilityTracker

log = structlog.get_logger(__name__)

_IGNORED_EVENTS = {"opened", "closed_no_write"}

#: What the kernel is asked to report: names that appear, vanish or are closed after a write.
#: Per-write "modified" events are left out on purpose: a file being written is re-checked by
#: its size and timestamps until it settles, and a burst of writes would otherwise flood the
#: watcher with events it does not need (the periodic rescan catches anything else).
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]


class _Handler(FileSystemEventHandler):
    """Forwards names that changed to the watcher's loop (watchdog calls this in its thread)."""

    def __init__(self, inbox: queue.SimpleQueue[tuple[str, str]]) -> None:
        self._inbox = inbox

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.event_type in _IGNORED_EVENTS:
            return
        if event.event_type == "moved":
            self._inbox.put(("deleted", os.fsdecode(event.src_path)))
            self._inbox.put(("changed", os.fsdecode(event.dest_path)))
        elif event.event_type == "deleted":
            self._inbox.put(("deleted", os.fsdecode(event.src_path)))
        else:
            self._inbox.put(("changed", os.fsdecode(event.src_path)))


class Watcher:
    """Records the task-list files of one watch dir (re-read from settings while running)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        queues: Queues | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.queues = queues
        self.clock = clock
        self.tracker = StabilityTracker(config.stability_window, config.watch_tick)
        self._inbox: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._observer: BaseObserver | None = None
        self._root: Path | None = None
        self._root_str = ""
        self._known: set[tuple[str, int, int]] = set()
        self._settings: models.Settings | None = None
        self._settings_at = 0.0
        self._refused: tuple[object, ...] = ()
        self._next_rescan = 0.0
        self._committer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="planfleet-recorder"
        )
        self._enqueuer = (
            Enqueuer(config.redis_url, config.plan_queue, config.build_queue, config.log_format)
            if queues is not None else None
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        assert self._root is not None, "the watcher is not started"
        return self._root

    def start(self) -> None:
        self._refresh_settings(force=True)

    def stop(self) -> None:
        self._stop_observer()
        self._committer.shutdown(wait=True)
        if self._enqueuer is not None:
            self._enqueuer.close()
            self._enqueuer = None

    def _stop_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set. Faults are logged and retried, never fatal."""
        waits = Backoff(first=0.5, cap=10.0)
        try:
            while not stop.is_set():
                wait = self.config.watch_tick
                try:
                    if self._observer is None:
                        self.start()  # at first, and again after the folder went away
                    self.step()
                    waits.reset()
                except (exceptions.DatabaseUnavailable, exceptions.StoreError) as exc:
                    wait = waits.next()
                    log.warning("watcher_backoff", action="watch", error=str(exc), wait=wait)
                except OSError as exc:
                    # the watch dir vanished (or was replaced) under the watcher: watch anew
                    self._stop_observer()
                    self._root = None
                    wait = waits.next()
                    log.warning("watch_dir_unavailable", action="watch",
                                error=names.display(str(exc)), wait=wait)
                except Exception:  # noqa: BLE001 - one file or fault never ends the watcher
                    wait = waits.next()
                    log.exception("watcher_fault", action="watch", wait=wait)
                stop.wait(wait)
        finally:
            self.stop()

    # -- one turn of the loop ----------------------------------------------------------------

    def step(self) -> list[models.RecordOutcome]:
        """Take in events, rescan when due, record what became stable.

        Batches are committed by a helper thread while this one reads the next batch (the
        database's time overlaps the file reading); at most one batch is in flight.
        """
        now = self.clock()
        self._refresh_settings()
        self._drain_events(now)
        if now >= self._next_rescan:
            self.scan(now)
        outcomes: list[models.RecordOutcome] = []
        batch: list[FileVersion] = []
        in_flight: tuple[concurrent.futures.Future[list[models.RecordOutcome]],
                         list[FileVersion]] | None = None

        def settle() -> None:
            nonlocal in_flight
            if in_flight is not None:
                future, _ = in_flight
                outcomes.extend(future.result())
                in_flight = None

        try:
            for name in self.tracker.due(now):
                version = self._check(name, now)
                if version is None:
                    continue
                batch.append(version)
                if len(batch) >= defaults.RECORD_BATCH:
                    settle()
                    in_flight = (self._committer.submit(self._record, batch), batch)
                    batch = []
            if batch:
                settle()
                in_flight = (self._committer.submit(self._record, batch), batch)
                batch = []
            settle()
        except exceptions.DatabaseUnavailable:
            # look at every file of the unrecorded batches again once Postgres answers
            again = batch + (in_flight[1] if in_flight is not None else [])
            for version in again:
                self.tracker.touch(version.filename, self.clock())
            raise
        return outcomes

    def scan(self, now: float) -> int:
        """Full scan of the watch dir: every name not yet looked at becomes a candidate."""
        self._next_rescan = now + self.config.rescan_interval
        found = 0
        try:
            entries = list(os.scandir(self.root))
        except OSError as exc:
            log.warning("watch_dir_unreadable", action="scan", dir=names.display(str(self.root)),
                        error=names.display(str(exc)))
            return 0
        for entry in entries:
            name = entry.name
            if intake.is_ignored_name(name) or name in self.tracker:
                continue
            seen = intake.look(self.root / name)
            if seen is None or (name, seen.size, seen.mtime_ns) in self._known:
                continue
            self.tracker.touch(name, now)
            found += 1
        return found

    # -- internals ---------------------------------------------------------------------------

    def _refresh_settings(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._settings_at < defaults.SETTINGS_REFRESH:
            return
        self._settings = self.store.settings.get()
        self._settings_at = now
        wanted = self._wanted_dir()
        if wanted != self._root:
            self._watch(wanted)

    def _wanted_dir(self) -> Path:
        """The setting's folder when it is allowed (never created), else WATCH_DIR."""
        if self._settings.watch_dir:
            try:
                return confine.watch_dir(self._settings.watch_dir,
                                         confine.watch_root(self.config))
            except exceptions.InvalidSetting as exc:
                if exc.args != self._refused:
                    log.error("watch_dir_refused", action="watch", error=str(exc),
                              fallback=str(self.config.watch_dir))
                    self._refused = exc.args
        wanted = Path(self.config.watch_dir).expanduser()
        wanted.mkdir(parents=True, exist_ok=True)  # WATCH_DIR: the operator's own choice
        return wanted.resolve()

    def _watch(self, root: Path) -> None:
        self._stop_observer()
        self._root = root
        self._root_str = str(root)
        self.tracker = StabilityTracker(self.config.stability_window, self.config.watch_tick)
        self._known = self.store.inputs.known_files(str(root))
        observer = Observer()
        observer.schedule(
            _Handler(self._inbox), str(root), recursive=False, event_filter=_EVENT_FILTER
        )
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._next_rescan = 0.0  # scan at once: files that arrived while nobody watched
        log.info("watching", action="watch", dir=names.display(str(root)), known=len(self._known))

    def _drain_events(self, now: float) -> None:
        while True:
            try:
                kind, path = self._inbox.get_nowait()
            except queue.Empty:
                return
            parent, name = os.path.split(path)
            if parent != self._root_str or intake.is_ignored_name(name):
                continue
            if kind == "deleted":
                self.tracker.forget(name)
            else:
                self.tracker.touch(name, now, changed=True)

    def _check(self, name: str, now: float) -> FileVersion | None:
        path = self.root / name
        seen = intake.look(path)
        if seen is None:
            self.tracker.forget(name)  # deleted before it was stable: nothing to say
            return None
        if (name, seen.size, seen.mtime_ns) in self._known:
            self.tracker.forget(name)
            return None
        if not self.tracker.observe(name, seen, now):
            return None
        if not seen.regular and path.is_dir() and not path.is_symlink():
            if not name.lower().endswith(intake.TASK_FILE_SUFFIXES):
                self._known.add((name, seen.size, seen.mtime_ns))
                log.debug("directory_skipped", action="watch", filename=names.display(name))
                return None
        version = intake.read_stable(self.root, name, seen, self.config.max_file_bytes)
        if version is None:
            if intake.look(path) is not None:
                self.tracker.touch(name, now + self.config.watch_tick)
            return None
        return version

    def _record_isolated(
        self, batch: list[FileVersion], queue_them: bool
    ) -> list[models.RecordOutcome]:
        """Record ``batch``; when it fails for a reason other than the database being away,
        record its files one by one, and a file that still fails as refused with the reason:
        one odd file never holds back the others, nor ends the watcher."""
        try:
            return self.store.inputs.record_files(str(self.root), batch, queue=queue_them)
        except exceptions.StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - isolated below
            if len(batch) == 1 and batch[0].error is not None:
                log.error("record_failed", action="record",
                          filename=names.display(batch[0].filename), error=str(exc))
                return []
            if len(batch) == 1:
                version = batch[0]
                log.error("record_failed", action="record",
                          filename=names.display(version.filename), error=str(exc))
                refused = dataclasses.replace(
                    version, digest=None, content=None,
                    error=f"could not be recorded: {type(exc).__name__}: {exc}")
                return self._record_isolated([refused], queue_them)
        outcomes: list[models.RecordOutcome] = []
        for version in batch:
            outcomes += self._record_isolated([version], queue_them)
        return outcomes

    def _record(self, batch: list[FileVersion]) -> list[models.RecordOutcome]:
        settings = self._settings
        assert settings is not None
        queue_them = settings.auto_plan and self.queues is not None
        outcomes = self._record_isolated(batch, queue_them)
        for version in batch:
            self._known.add((version.filename, version.size, version.mtime_ns))
        errors = {names.display(v.filename): names.display(v.error) for v in batch if v.error}
        for out in outcomes:
            if out.outcome == "refused":
                log.warning(
                    "input_refused",
                    action="record",
                    input_id=out.input_id,
                    filename=out.filename,
                    reason=errors.get(out.filename),
                )
            else:
                log.info(
                    f"input_{out.outcome}",
                    action="record",
                    input_id=out.input_id,
                    filename=out.filename,
                    source=out.source,
                )
        new_ids = [o.input_id for o in outcomes if o.outcome == "recorded"]
        if queue_them and new_ids:
            assert self._enqueuer is not None
            self._enqueuer.submit(new_ids)
        return outcomes
