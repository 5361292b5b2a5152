"""structlog set-up: JSON lines when not on a terminal, readable console output on one.

Every log line is written once, by one handler on the root logger: structlog's own events and
the standard library's (RQ, uvicorn, httpx …) go through the same renderer. RQ's command line
gives its ``rq.worker`` logger handlers of its own; they are removed here, since with the root
handler each of its lines would be printed twice.
"""

from __future__ import annotations

import logging
import sys

import structlog

#: Loggers that libraries give handlers of their own (each of their records would otherwise be
#: written by that handler and again by the root's).
OWN_HANDLERS = ("rq.worker", "rq.scheduler", "rq")


_HANDLER = "planfleet"


def _is_plain_stderr(h: logging.Handler) -> bool:
    """A bare stream handler on stderr (``logging.basicConfig``'s): it would print each line
    a second time, unrendered."""
    return type(h) is logging.StreamHandler and getattr(h, "stream", None) in (
        sys.stderr, sys.__stderr__)


def _renderer(fmt: str) -> structlog.typing.Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())


def configure(fmt: str = "auto", level: int = logging.INFO) -> None:
    """Configure structlog (and stdlib logging) for a planfleet process; safe to call again.

    Parameters
    ----------
    fmt:
        ``"json"``, ``"console"``, or ``"auto"`` (console when stderr is a terminal).
    """
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _renderer(fmt)],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _renderer(fmt)],
    ))
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    # replace our handler (configure may run again), leave others' (a test runner's) alone
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER
                        and not _is_plain_stderr(h)] + [handler]
    root.setLevel(logging.WARNING)
    for name in OWN_HANDLERS:
        logging.getLogger(name).handlers.clear()
