"""Where ``planfleet up`` finds what it runs."""

from __future__ import annotations

from planfleet import up
from planfleet.config import SHIPPED_PROCFILE, SHIPPED_SCRIPTS, Config


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
