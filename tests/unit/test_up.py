"""``planfleet up``'s exit code and where it finds what it runs."""

from __future__ import annotations

import pytest

from planfleet import up
from planfleet.config import SHIPPED_PROCFILE, SHIPPED_SCRIPTS, Config


@pytest.mark.parametrize(("honcho_rc", "stopped", "expected"), [
    (130, True, 0),    # Ctrl-C, honcho stopped every process
    (143, True, 0),    # SIGTERM to `up`
    (1, True, 1),      # a process had failed before the stop: its code
    (130, False, 130), # honcho was interrupted by someone else: not a stop we asked for
    (0, False, 0),
    (2, False, 2),     # a process exited on its own and ended the fleet
])
def test_exit_code(honcho_rc, stopped, expected):
    assert up.exit_code(honcho_rc, stopped=stopped) == expected


def test_procfile_from_the_package_in_an_empty_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert up._procfile() == SHIPPED_PROCFILE
    assert "rq worker plan_queue" in SHIPPED_PROCFILE.read_text()
    (tmp_path / "Procfile").write_text("watcher: planfleet watch\n")
    assert up._procfile() == tmp_path / "Procfile"


def test_scripts_default_to_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PLANFLEET_SCRIPTS_DIR", raising=False)
    assert Config().scripts_dir == SHIPPED_SCRIPTS
    assert (SHIPPED_SCRIPTS / "f" / "planner" / "solver_dispatch.py").is_file()
