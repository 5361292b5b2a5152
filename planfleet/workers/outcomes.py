"""How a step's job ended, in the classes the retry policy acts on.

A script says it in its result — ``{"status": "ok" | "needs_qa" | "error", "error_type":
"transient" | "timeout" | "agent_unavailable" | "specification", "message": …,
"question": …}`` — or by raising: the exception's class name is classified (names ending in
``TransientError``, ``ConnectionError``, ``TimeoutError``, ``AgentUnavailable``,
``SpecificationError``, ``ClarificationNeeded``…). A plain return value is ``ok``; any other
error is ``error``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from planfleet.dispatch import JobState, JobStatus

TRANSIENT = "transient"
TIMEOUT = "timeout"
AGENT_UNAVAILABLE = "agent_unavailable"
SPECIFICATION = "specification"
ERROR = "error"
CLASSES = (TRANSIENT, TIMEOUT, AGENT_UNAVAILABLE, SPECIFICATION, ERROR)

#: Exception class names (lower case, suffix match) and the class they mean.
_RAISED = (
    ("steptimeout", TIMEOUT), ("timeout", TIMEOUT), ("timeouterror", TIMEOUT),
    ("transienterror", TRANSIENT), ("connectionerror", TRANSIENT),
    ("connectionreseterror", TRANSIENT), ("brokenpipeerror", TRANSIENT),
    ("temporaryerror", TRANSIENT),
    ("agentunavailable", AGENT_UNAVAILABLE), ("agentunavailableerror", AGENT_UNAVAILABLE),
    ("specificationerror", SPECIFICATION), ("clarificationneeded", SPECIFICATION),
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    #: ok | needs_qa | error
    status: str
    error_type: str | None = None
    message: str | None = None
    #: what a person is asked (specification errors)
    question: str | None = None
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def classify_raised(name: str | None) -> str:
    key = (name or "").lower()
    for suffix, cls in _RAISED:
        if key == suffix or key.endswith(suffix):
            return cls
    return key if key in CLASSES else ERROR


def classify(status: JobStatus) -> Outcome:
    """The outcome of a finished job."""
    value = status.result
    if status.state is JobState.SUCCESS:
        if isinstance(value, dict) and value.get("status") in ("error", "needs_qa"):
            if value["status"] == "needs_qa":
                return Outcome("needs_qa", value=value)
            kind = str(value.get("error_type") or ERROR)
            kind = kind if kind in CLASSES else classify_raised(kind)
            message = str(value.get("message") or value.get("error") or "the step reported "
                          "an error")
            question = value.get("question")
            return Outcome("error", kind, message,
                           str(question) if question else (message if kind == SPECIFICATION
                                                           else None), value)
        return Outcome("ok", value=value)
    kind = classify_raised(status.error_type)
    message = status.error or "failed"
    return Outcome("error", kind, message, message if kind == SPECIFICATION else None, value)


def job_status(observed: Mapping[str, Any]) -> JobStatus:
    """A job's end as the tracker recorded it."""
    return JobStatus(JobState(observed["state"]), result=observed.get("result"),
                     error=observed.get("error"), duration=observed.get("duration"),
                     link=observed.get("link"), error_type=observed.get("error_type"))


def observation(status: JobStatus) -> dict[str, Any]:
    """What the tracker records of a job's end (the inverse of :func:`job_status`)."""
    return {"state": str(status.state), "result": status.result, "error": status.error,
            "duration": status.duration, "link": status.link, "error_type": status.error_type}
