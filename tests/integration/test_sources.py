"""Sources on real Postgres: the migration's backfill, each way in, duplicates, history."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from planfleet import models, sources
from planfleet.config import Config
from planfleet.runtime import Runtime
from planfleet.schema import migrate
from planfleet.schema.repositories import FileVersion, Store
from planfleet.workers import planning


def version(name: str, body: bytes, mtime: int = 1) -> FileVersion:
    return FileVersion(name, len(body), mtime, hashlib.sha256(body).hexdigest(), body)


def record(store: Store, name: str, body: bytes, *, mtime: int = 1,
           folder: str = "/in") -> models.RecordOutcome:
    (out,) = store.inputs.record_files(folder, [version(name, body, mtime)], queue=False)
    return out


# -- the migration ---------------------------------------------------------------------------

def test_the_migration_backfills_sources_from_file_names_and_drops_global_digest_uniqueness(
        template_db: str, database_url: str) -> None:
    # a database as it was before sources: every migration up to 0011 applied, with rows
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    with psycopg.connect(database_url) as conn, conn.transaction():
        for name, sql in migrate.available():
            if name >= "0011":
                break
            conn.execute(sql.encode())
        conn.execute("CREATE TABLE planfleet_migrations (version text PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("INSERT INTO planfleet_migrations SELECT v FROM unnest(%s::text[]) v",
                     [[n for n, _ in migrate.available() if n < "0011"]])
        conn.execute("""
            INSERT INTO pending_inputs (filename, source_dir, digest, size, content, status)
            VALUES ('a.yaml', '/in', repeat('a', 64), 1, 'x', 'planned'),
                   ('b.yaml', 'upload:', repeat('b', 64), 1, 'y', 'pending')""")
        conn.execute("INSERT INTO plans (pending_input_id, plan, digest) "
                     "SELECT id, '{}', 'd' FROM pending_inputs WHERE filename = 'a.yaml'")
    assert migrate.migrate(database_url)[-1] >= "0011"
    store = Store.from_url(database_url)
    try:
        got = {i.filename: i.source for i in store.inputs.list()}
        assert got == {"a.yaml": "file:a.yaml", "b.yaml": "upload:b.yaml"}
        (plan,) = store.plans.list()
        assert plan.source == "file:a.yaml"
        # the same bytes in another source are a version of that source now
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("""
                INSERT INTO pending_inputs (filename, source_dir, digest, size, content)
                VALUES ('c.yaml', '/in', repeat('a', 64), 1, 'x')""")
            # an older writer that names no source gets its name's source
            row = conn.execute("SELECT source FROM pending_inputs WHERE filename = 'c.yaml'"
                               ).fetchone()
        assert row == ("file:c.yaml",)
    finally:
        store.close()


# -- recording -------------------------------------------------------------------------------

def test_the_same_bytes_again_in_a_source_are_a_duplicate_of_its_latest_version(
        store: Store) -> None:
    first = record(store, "plan.yaml", b"tasks: [{id: A}]\n")
    assert (first.outcome, first.source) == ("recorded", "file:plan.yaml")
    again = record(store, "plan.yaml", b"tasks: [{id: A}]\n", mtime=2)
    assert (again.outcome, again.input_id) == ("duplicate", first.input_id)
    second = record(store, "plan.yaml", b"tasks: [{id: A}, {id: B}]\n", mtime=3)
    assert second.outcome == "recorded"
    # back to the first bytes: a new version (the latest differs), not a duplicate
    back = record(store, "plan.yaml", b"tasks: [{id: A}]\n", mtime=4)
    assert back.outcome == "recorded" and back.input_id not in (first.input_id,
                                                                second.input_id)
    event = store.events.list(input_id=back.input_id, kind="input_recorded")[0]
    assert event.data["source"] == "file:plan.yaml"
    assert event.data["previous"] == second.input_id
    dup = store.events.list(kind="input_duplicate")[0]
    assert dup.data == {"filename": "plan.yaml", "digest": hashlib.sha256(
        b"tasks: [{id: A}]\n").hexdigest(), "source": "file:plan.yaml"}


def test_the_same_bytes_in_another_source_are_a_version_of_that_source(store: Store) -> None:
    body = b"tasks: [{id: A}]\n"
    a = record(store, "a.yaml", body)
    b = record(store, "b.yaml", body)
    up = store.inputs.record_files(sources.UPLOAD_DIR, [version("a.yaml", body)], queue=False)
    assert [x.outcome for x in (a, b, *up)] == ["recorded"] * 3
    assert [x.source for x in (a, b, *up)] == ["file:a.yaml", "file:b.yaml", "upload:a.yaml"]
    # a declared source joins files of any name, and any way in, into one lineage
    keyed = b"source: backlog\ntasks: [{id: A}]\n"
    one = record(store, "x.yaml", keyed)
    two = store.inputs.record_files(sources.UPLOAD_DIR, [version("y.yaml", keyed)],
                                    queue=False)[0]
    assert one.source == two.source == "key:backlog"
    assert (two.outcome, two.input_id) == ("duplicate", one.input_id)


def test_a_refused_version_has_its_source_and_does_not_count_as_the_latest(
        store: Store) -> None:
    body = b"tasks: [{id: A}]\n"
    first = record(store, "p.yaml", body)
    (refused,) = store.inputs.record_files(
        "/in", [FileVersion("p.yaml", 10**9, 2, error="too big")], queue=False)
    assert (refused.outcome, refused.source) == ("refused", "file:p.yaml")
    assert record(store, "p.yaml", body, mtime=3).outcome == "duplicate"
    assert store.inputs.get(first.input_id).source == "file:p.yaml"


def test_two_versions_of_one_source_in_a_batch_and_racing_recorders(
        database_url: str, store: Store) -> None:
    keyed = [f"source: s\ntasks: [{{id: T{i}}}]\n".encode() for i in range(2)]
    outs = store.inputs.record_files("/in", [version("b.yaml", keyed[1]),
                                             version("a.yaml", keyed[0])], queue=False)
    assert [(o.filename, o.outcome) for o in outs] == [("a.yaml", "recorded"),
                                                       ("b.yaml", "recorded")]
    assert [v.input.filename for v in store.sources.history("key:s").versions] == [
        "a.yaml", "b.yaml"]
    # the same new bytes posted at once by several clients: one version, the rest duplicates
    body = b"source: race\ntasks: [{id: A}]\n"
    stores = [Store.from_url(database_url) for _ in range(6)]
    barrier = threading.Barrier(len(stores))

    def post(n: int) -> models.RecordOutcome:
        barrier.wait()
        return stores[n].inputs.record_files(
            sources.UPLOAD_DIR, [version("r.yaml", body, mtime=n)], queue=False)[0]

    with ThreadPoolExecutor(len(stores)) as pool:
        results = list(pool.map(post, range(len(stores))))
    for s in stores:
        s.close()
    assert sorted(r.outcome for r in results) == ["duplicate"] * 5 + ["recorded"]
    assert len({r.input_id for r in results}) == 1


# -- plans and history -----------------------------------------------------------------------

@pytest.fixture
def rt(store: Store, database_url: str) -> Runtime:
    store.settings.update(auto_build=False)
    return Runtime(config=Config(database_url=database_url), store=store,
                   queues=None)  # type: ignore[arg-type]


def plan(rt: Runtime, name: str, body: bytes, mtime: int) -> models.RecordOutcome:
    out = record(rt.store, name, body, mtime=mtime)
    if out.outcome == "recorded":
        rt.store.inputs.queue(out.input_id)
        planning.plan_input(rt, out.input_id, "job")
    return out


def test_a_source_s_history_lists_its_versions_and_its_current_plan(rt: Runtime) -> None:
    store = rt.store
    assert store.sources.history("file:none.yaml") == models.SourceHistory(
        "file:none.yaml", [], None)
    v1 = plan(rt, "tasks.md", b"- [ ] T001 One\n- [ ] T002 Two\n", 1)
    bad = plan(rt, "tasks.md", b"- [ ] T001 One\n- [ ] T002 Two (depends on T009)\n", 2)
    v3 = plan(rt, "tasks.md", b"- [x] T001 One\n- [ ] T002 Two\n", 3)
    other = plan(rt, "other.md", b"- [ ] T001 One\n- [ ] T002 Two\n", 4)
    history = store.sources.history("file:tasks.md")
    assert [(v.input.id, v.input.status) for v in history.versions] == [
        (v1.input_id, models.InputStatus.PLANNED), (bad.input_id, models.InputStatus.FAILED),
        (v3.input_id, models.InputStatus.PLANNED)]
    plans = [v.plan_id for v in history.versions]
    assert plans[0] is not None and plans[1] is None and plans[2] is not None
    assert history.current_plan is not None and history.current_plan.id == plans[2]
    assert history.current_plan.source == "file:tasks.md"
    full = store.plans.get(plans[2])
    assert full.source == "file:tasks.md" and full.plan["done_in_source"] == ["T001"]
    created = store.events.list(plan_id=plans[2], kind="plan_created")[0]
    assert created.data["source"] == "file:tasks.md"
    # the first plan never started: the newer version's plan took its place
    first = store.plans.get(plans[0])
    assert first.status is models.PlanStatus.CANCELLED and "superseded" in (first.error or "")
    # a cancelled plan is not revised: no plan of the source is alive now
    store.plans.cancel(plans[2], "no")
    assert store.sources.history("file:tasks.md").current_plan is None
    assert store.sources.history("file:other.md").versions[0].input.id == other.input_id
    # a person names a source by its key or by a file name
    assert store.sources.resolve("file:tasks.md") == ["file:tasks.md"]
    assert store.sources.resolve("tasks.md") == ["file:tasks.md"]
    assert store.sources.resolve("nothing.md") == []


def test_a_youtrack_pull_file_is_a_version_of_its_project_and_search(store: Store) -> None:
    issue = {"idReadable": "SAM-1", "summary": "One", "customFields": [], "links": []}
    doc = {"format": "youtrack", "project": "SAM", "query": "tag: x", "issues": [issue]}
    a = record(store, "youtrack-SAM-1.json", json.dumps(doc).encode())
    b = record(store, "youtrack-SAM-2.json", json.dumps(doc).encode())
    assert a.source == b.source == "youtrack:SAM?tag: x"
    assert (b.outcome, b.input_id) == ("duplicate", a.input_id)


# -- planfleet history -----------------------------------------------------------------------

def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PLANFLEET_LOG_FORMAT": "json",
           "COLUMNS": "120"}
    return subprocess.run([str(Path(sys.executable).parent / "planfleet"), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_history_lists_a_source_s_versions_by_key_or_file_name(
        rt: Runtime, database_url: str) -> None:
    v1 = plan(rt, "tasks.md", b"- [ ] T001 One\n", 1)
    v2 = plan(rt, "tasks.md", b"- [ ] T001 One\n- [ ] T002 Two (depends on T009)\n", 2)
    up = rt.store.inputs.record_files(sources.UPLOAD_DIR, [version("tasks.md", b"- [ ] T1 x\n")],
                                      queue=False)[0]
    plan_id = rt.store.sources.history("file:tasks.md").versions[0].plan_id
    r = cli(database_url, "history", "file:tasks.md")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"source file:tasks.md: 2 versions, current plan {plan_id} " \
                       "(ready_for_build)"
    digest = hashlib.sha256(b"- [ ] T001 One\n").hexdigest()[:12]
    row1 = next(ln for ln in lines if ln.split()[:1] == [str(v1.input_id)])
    assert row1.split()[3:6] == ["planned", str(plan_id), digest]
    row2 = next(ln for ln in lines if ln.split()[:1] == [str(v2.input_id)])
    assert " failed " in row2 and "task T002" in row2
    # a plain file name: every source with an input of that name, the latest first
    r = cli(database_url, "history", "tasks.md", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [h["source"] for h in got] == ["upload:tasks.md", "file:tasks.md"]
    assert got[0]["versions"][0]["input_id"] == up.input_id
    assert got[1]["current_plan"] == {"id": plan_id, "status": "ready_for_build"}
    assert [v["status"] for v in got[1]["versions"]] == ["planned", "failed"]
    r = cli(database_url, "history", "nothing.md")
    assert r.returncode == 2 and "no input belongs to a source" in r.stderr
    # the plan names its source
    r = cli(database_url, "show", str(plan_id))
    assert "source file:tasks.md" in r.stdout
