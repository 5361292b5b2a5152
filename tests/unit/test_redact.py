"""Errors shown to API clients lose the server's absolute paths."""

from __future__ import annotations

import pytest

from planfleet.api import redact
from planfleet.api.routes import content_disposition


@pytest.mark.parametrize("text, shown", [
    ("[Errno 36] File name too long: '/opt/planfleet/deploy/windmill/f/x/aaaa.py'",
     "[Errno 36] File name too long: '…/aaaa.py'"),
    ("no such script: /srv/fleet/scripts/f/team/job.py (exit 2)",
     "no such script: …/job.py (exit 2)"),
    ("see /root/.planfleet/runner/jobs/17/log.txt and /tmp/x", "see …/log.txt and …/x"),
    # not paths of this machine: kept
    ("script f/team/job failed", "script f/team/job failed"),
    ("GET http://127.0.0.1:8000/api/w/x/jobs/run/p/u/a/b: 404", None),
    ("a/b/c and 3/4 and 12:30", None),
])
def test_absolute_paths_are_cut_to_their_last_part(text: str, shown: str | None) -> None:
    assert redact.paths(text) == (shown or text)


def test_none_stays_none() -> None:
    assert redact.paths(None) is None


@pytest.mark.parametrize("name", ["plain.yaml", "été 数据.yaml", 'q"uote\\.yaml',
                                  "latin1-\udce9t\udce9.json"])
def test_any_file_name_makes_a_latin1_header(name: str) -> None:
    header = content_disposition(name)
    header.encode("latin-1")  # what the server can send
    assert header.startswith('attachment; filename="') and "filename*=UTF-8''" in header
    from urllib.parse import unquote

    exact = header.split("filename*=UTF-8''", 1)[1]
    assert unquote(exact, errors="surrogateescape") == name.encode(
        "utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
