"""`planfleet pull youtrack` against a loopback YouTrack, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_youtrack import FakeYouTrack, issue

BIN = str(Path(sys.executable).parent / "planfleet")


@pytest.fixture
def youtrack() -> Iterator[FakeYouTrack]:
    issues = [issue(f"SAM-{n}", f"Task {n}", minutes=30 + n % 7 * 10,
                    priority="Critical" if n % 50 == 0 else "Normal",
                    depends_on=(f"SAM-{n - 1}",) if n % 10 != 1 else ())
              for n in range(1, 231)]
    issues.append(issue("SAM-999", "Done long ago", resolved=True))
    issues.append(issue("OTHER-1", "Another project"))
    issues[4]["links"][0]["issues"].append({"idReadable": "SAM-999", "resolved": 1})
    fake = FakeYouTrack(issues)
    yield fake
    fake.close()


def pull(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN, "pull", "youtrack", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_open_issues_are_written_atomically_as_a_plannable_task_file(
        youtrack: FakeYouTrack, tmp_path: Path) -> None:
    r = pull("--url", youtrack.url, "--token", youtrack.token, "--project", "SAM",
             "--to", str(tmp_path))
    assert r.returncode == 0, r.stderr
    (written,) = tmp_path.iterdir()  # no temporary file left beside it
    assert written.name == "youtrack-SAM.json"
    assert str(written) in r.stdout and "230 issues" in r.stdout
    assert "(source youtrack:SAM)" in r.stdout
    doc = json.loads(written.read_text())
    assert (doc["format"], doc["project"], "query" in doc) == ("youtrack", "SAM", False)
    issues = doc["issues"]
    assert [i["idReadable"] for i in issues] == [f"SAM-{n}" for n in range(1, 231)]
    assert len(youtrack.requests) == 3  # pages of 100
    assert youtrack.requests[0]["query"] == ["project: {SAM} #Unresolved"]
    # the file is a YouTrack export the planner reads: estimates, priorities, dependencies
    p = subprocess.run([BIN, "plan", str(written), "--json"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["format"] == "youtrack" and plan["task_count"] == 230
    assert plan["tasks"]["SAM-2"]["depends_on"] == ["SAM-1"]
    assert plan["tasks"]["SAM-5"]["depends_on"] == ["SAM-4"]  # resolved SAM-999 dropped
    assert plan["tasks"]["SAM-50"]["priority"] == 100
    assert plan["tasks"]["SAM-3"]["estimate"] == 60
    assert plan["done_in_source"] == ["SAM-999"]  # resolved, as a link says


def test_a_query_narrows_the_search_and_env_vars_configure_it(
        youtrack: FakeYouTrack, tmp_path: Path) -> None:
    r = pull("--project", "SAM", "--query", "Priority: Critical", "--to", str(tmp_path),
             env={"YOUTRACK_URL": youtrack.url, "YOUTRACK_TOKEN": youtrack.token})
    assert r.returncode == 0, r.stderr
    (written,) = tmp_path.iterdir()
    doc = json.loads(written.read_text())
    assert {i["idReadable"] for i in doc["issues"]} == {
        "SAM-50", "SAM-100", "SAM-150", "SAM-200"}
    # every pull of this project and search is a version of one source
    assert doc["query"] == "Priority: Critical"
    assert "(source youtrack:SAM?Priority: Critical)" in r.stdout
    long = pull("--project", "SAM", "--query", "x" * 1001, "--to", str(tmp_path),
                env={"YOUTRACK_URL": youtrack.url, "YOUTRACK_TOKEN": youtrack.token})
    assert long.returncode == 2 and "over 1000 characters" in long.stderr


def test_a_wrong_token_or_project_fails_with_the_reason_and_writes_nothing(
        youtrack: FakeYouTrack, tmp_path: Path) -> None:
    r = pull("--url", youtrack.url, "--token", "wrong", "--project", "SAM", "--to", str(tmp_path))
    assert r.returncode == 2
    assert "YouTrack refused the token (401): You are not logged in." in r.stderr
    r = pull("--url", youtrack.url, "--token", youtrack.token, "--project", "NOPE",
             "--to", str(tmp_path))
    assert r.returncode == 2 and "Unknown project: NOPE" in r.stderr
    r = pull("--url", "http://127.0.0.1:9", "--token", "x", "--project", "SAM",
             "--to", str(tmp_path))
    assert r.returncode == 4 and "cannot reach YouTrack" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_another_estimate_field_custom_priorities_and_name_only_link_types(
        tmp_path: Path) -> None:
    first, second = issue("SAM-1", "Schema", minutes=None), issue("SAM-2", "Login", minutes=None)
    first["customFields"] += [{"$type": "PeriodIssueCustomField", "name": "Time spent est",
                               "value": {"$type": "PeriodValue", "minutes": None,
                                         "presentation": "1d 2h"}}]
    second["customFields"][0]["value"]["name"] = "Nice to have"
    # as real answers often have it: the link type by name only, the link under trimmedIssues
    first["links"] = [{"$type": "IssueLink", "direction": "OUTWARD",
                       "linkType": {"$type": "IssueLinkType", "name": "Depend"},
                       "trimmedIssues": [{"$type": "Issue", "idReadable": "SAM-2",
                                          "resolved": None}]}]
    fake = FakeYouTrack([first, second])
    try:
        bad = pull("--url", fake.url, "--token", fake.token, "--project", "SAM",
                   "--to", str(tmp_path), "--priority", "Nice to have")
        assert bad.returncode == 2 and "NAME=NUMBER" in bad.stderr
        r = pull("--url", fake.url, "--token", fake.token, "--project", "SAM",
                 "--to", str(tmp_path), "--estimate-field", "Time spent est",
                 "--priority", "Nice to have=10")
    finally:
        fake.close()
    assert r.returncode == 0, r.stderr
    (written,) = tmp_path.iterdir()
    p = subprocess.run([BIN, "plan", str(written), "--json"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["tasks"]["SAM-1"]["estimate"] == 600  # 1d 2h of 8-hour days
    assert plan["tasks"]["SAM-2"]["priority"] == 10
    assert plan["tasks"]["SAM-2"]["depends_on"] == ["SAM-1"]  # SAM-1 is required for SAM-2
    assert [w["code"] for w in plan["warnings"]] == []
    # without the options: the custom priority is a named error, not a silent default
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(json.loads(written.read_text())["issues"]))
    p = subprocess.run([BIN, "plan", str(plain)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "unknown priority 'Nice to have'" in p.stderr
