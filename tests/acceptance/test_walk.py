"""The README's "A first walk", run as written: ``make up`` in one shell, the walk's blocks in
another, in order, from a fresh fleet to built plans, manual mode and back."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import termios
import threading
from pathlib import Path

import psycopg
import pytest

from tests.conftest import _admin, _url_for, wait_for
from tests.support.services import free_port
from tests.support.shell import ROOT, user_env

pytestmark = pytest.mark.slow


def _copy(fd: int, path: Path) -> None:
    """What the terminal shows, into ``path`` (read until the terminal closes)."""
    with open(path, "ab", buffering=0) as fh:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                return
            fh.write(data)


def walk_blocks() -> list[str]:
    """The ``sh`` blocks of the README's "A first walk" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## A first walk", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_walk_is_the_readme_s():
    blocks = walk_blocks()
    assert blocks[0].strip() == "make up"
    assert len(blocks) >= 3 and all("planfleet" in b for b in blocks[1:])


def test_the_readme_walk(redis_url, tmp_path):
    name = f"planfleet_walk_{os.getpid()}"
    database_url = _url_for(name)
    home = tmp_path
    first, *walk = walk_blocks()
    # `make up` in the checkout, with the test's Postgres and Redis (the README: "unless
    # DATABASE_URL / REDIS_URL are set"), and its state and watched folder in a fresh place
    up_env = {**user_env(), "DATABASE_URL": database_url, "REDIS_URL": redis_url,
              "WATCH_DIR": str(home / "input"), "PLANFLEET_STATE_DIR": str(home / ".planfleet"),
              "PLANFLEET_API_PORT": str(free_port()), "PLANFLEET_LOG_FORMAT": "json"}
    out = home / "make-up.out"
    out.touch()
    # the first terminal: a pseudo-terminal, so that Ctrl-C is the terminal's (a SIGINT to
    # its foreground process group), as a person's is
    master, slave = os.openpty()
    up = subprocess.Popen(["bash", "-c", first], cwd=ROOT, env=up_env, stdin=slave,
                          stdout=slave, stderr=slave, start_new_session=True,
                          preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    threading.Thread(target=_copy, args=(master, out), daemon=True).start()
    try:
        # the person reads "planfleet is up" before going on
        wait_for(lambda: "planfleet is up" in out.read_text() or up.poll() is not None,
                 timeout=300, interval=0.2)
        assert up.poll() is None, out.read_text()[-3000:]
        # the walk, in a second shell that knows nothing of the fleet but what it sources
        shell = subprocess.run(["bash", "-e", "-c", "\n".join(walk)], cwd=home,
                               env=user_env(), capture_output=True, text=True, timeout=300)
        assert shell.returncode == 0, shell.stdout + shell.stderr + out.read_text()[-3000:]
        with psycopg.connect(database_url) as conn:
            plans = conn.execute("SELECT id, status::text FROM plans ORDER BY id").fetchall()
            settings = conn.execute("SELECT auto_plan, auto_build FROM settings").fetchone()
        assert plans == [(1, "built"), (2, "built")]
        assert settings == (True, True)
        assert "input 2 queued for planning" in shell.stdout
        assert "plan 2 queued for building" in shell.stdout
    finally:
        # Ctrl-C in the first terminal: a clean stop, and make exits 0
        os.write(master, b"\x03")
        rc = up.wait(timeout=90)
        os.close(master)
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert rc == 0, out.read_text()[-3000:]
    assert "Error 130" not in out.read_text()
