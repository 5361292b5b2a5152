"""Each log line once: RQ's own handlers and the root handler must not both write a record."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from rq.logutils import setup_loghandlers

from planfleet import logs


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    for name in logs.OWN_HANDLERS:
        logging.getLogger(name).handlers.clear()
    structlog.reset_defaults()


def _lines(capfd: pytest.CaptureFixture[str], needle: str) -> list[str]:
    out, err = capfd.readouterr()
    return [line for line in (out + err).splitlines() if needle in line]


def test_an_rq_line_is_written_once_after_rq_set_up_its_handlers(capfd):
    setup_loghandlers("INFO")  # what `rq worker` does before it builds the worker class
    logs.configure("json")  # the worker class's start-up
    setup_loghandlers("INFO")  # Worker.work() calls it again
    logging.getLogger("rq.worker").info("Listening on %s...", "plan_queue")
    lines = _lines(capfd, "Listening on plan_queue")
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["level"] == "info" and record["logger"] == "rq.worker"


def test_configure_twice_keeps_one_handler(capfd):
    logs.configure("json")
    logs.configure("json")
    structlog.get_logger("t").warning("only_once", n=1)
    logging.getLogger("some.library").warning("library_once")
    out, err = capfd.readouterr()
    assert (out + err).count("only_once") == 1
    assert (out + err).count("library_once") == 1


def test_library_warnings_once_and_info_filtered(capfd):
    logs.configure("json")
    logging.getLogger("some.library").warning("library warning")
    logging.getLogger("some.library").info("library chatter")
    out, err = capfd.readouterr()
    text = out + err
    assert text.count("library warning") == 1
    assert "library chatter" not in text
