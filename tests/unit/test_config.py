from __future__ import annotations

from pathlib import Path

import pytest

from planfleet.config import Config


def test_environment_wins_over_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "planfleet.toml").write_text(
        'database_url = "postgresql://toml/db"\nredis_url = "redis://toml:1/0"\n'
        "stability_window = 2.5\n"
    )
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PLANFLEET_DATABASE_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://env:2/0")
    c = Config()
    assert c.database_url == "postgresql://toml/db"
    assert c.redis_url == "redis://env:2/0"
    assert c.stability_window == 2.5


def test_prefixed_names_are_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WATCH_DIR", raising=False)
    monkeypatch.setenv("PLANFLEET_WATCH_DIR", "/srv/in")
    monkeypatch.setenv("PLANFLEET_MAX_FILE_BYTES", "123")
    c = Config()
    assert c.watch_dir == Path("/srv/in") and c.max_file_bytes == 123
