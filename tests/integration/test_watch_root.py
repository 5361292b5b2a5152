"""``watch_dir`` (the run-time setting) stays inside the watch root: refused by the API and the
CLI, ignored by the watcher if the row says otherwise, never created."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from planfleet import queues
from planfleet.api import create_app
from planfleet.config import Config
from planfleet.runtime import Runtime, open_runtime
from planfleet.schema.repositories import Store
from planfleet.watcher import Watcher

TOKEN = "root-token"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "input" / "team").mkdir(parents=True)
    return tmp_path / "root"


@pytest.fixture
def rt(database_url: str, redis_url: str, root: Path) -> Iterator[Runtime]:
    r = open_runtime(Config(database_url=database_url, redis_url=redis_url, api_token=TOKEN,
                            watch_root=root))
    yield r
    r.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt, dashboard=False),
                    headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


@pytest.mark.parametrize("value, reason", [
    ("/etc", "outside the watch root"),
    ("../", "outside the watch root"),
    ("input/../../", "outside the watch root"),
    ("input/new", "does not exist"),
    ("link-to-etc", "outside the watch root"),
    ("input/file.txt", "is not a folder"),
])
def test_the_api_refuses_folders_outside_the_root(client: TestClient, rt: Runtime, root: Path,
                                                  value: str, reason: str) -> None:
    (root / "link-to-etc").symlink_to("/etc")
    (root / "input" / "file.txt").write_text("x")
    r = client.put("/api/settings", json={"watch_dir": value})
    assert r.status_code == 422, r.text
    (item,) = r.json()["detail"]
    assert item["loc"] == ["body", "watch_dir"] and reason in item["msg"]
    assert rt.store.settings.get().watch_dir is None
    assert not (root / "input" / "new").exists()  # nothing created


def test_the_api_takes_a_folder_inside_the_root(client: TestClient, rt: Runtime,
                                                root: Path) -> None:
    r = client.put("/api/settings", json={"watch_dir": "input/team"})
    assert r.status_code == 200 and r.json()["watch_dir"] == str(root / "input" / "team")
    r = client.put("/api/settings", json={"watch_dir": str(root / "input")})
    assert r.json()["watch_dir"] == str(root / "input")
    assert client.put("/api/settings", json={"watch_dir": ""}).json()["watch_dir"] is None


def test_the_cli_refuses_it_too(database_url: str, redis_url: str, root: Path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "PLANFLEET_WATCH_ROOT": str(root)}
    cli = str(Path(sys.executable).parent / "planfleet")
    r = subprocess.run([cli, "settings", "set", "watch_dir", "/etc"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "outside the watch root" in r.stdout + r.stderr


def test_the_watcher_ignores_a_row_outside_the_root_and_creates_nothing(
        database_url: str, redis_url: str, root: Path, tmp_path: Path) -> None:
    # Given a settings row that names /etc (set before this check existed, or by hand)
    store = Store.from_url(database_url)
    try:
        store.settings.update(watch_dir="/etc", set_watch_dir=True)
        config = Config(database_url=database_url, redis_url=redis_url,
                        watch_dir=root / "input", watch_root=root)
        w = Watcher(config, store, queues.Queues(queues.connect(redis_url)))
        # When the watcher starts, Then it watches WATCH_DIR, not /etc
        w.start()
        try:
            assert w.root == (root / "input").resolve()
            # and a row naming a missing folder inside the root does not create it
            store.settings.update(watch_dir=str(root / "made-up"), set_watch_dir=True)
            w._refresh_settings(force=True)
            assert not (root / "made-up").exists() and w.root == (root / "input").resolve()
        finally:
            w.stop()
    finally:
        store.close()
