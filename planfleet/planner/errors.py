"""Problems found in a task list. The planner collects every one before answering."""

from __future__ import annotations

import dataclasses
from typing import Any

from planfleet.exceptions import PlanfleetError


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a task list, and where it is."""

    code: str
    message: str
    task: str | None = None
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.task is not None:
            where.append(f"task {self.task}")
        if self.field is not None:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


class PlanningError(PlanfleetError):
    """The task list cannot be planned."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None) -> None:
        self.problems = problems
        #: what the planner warned about in what it could read (shown beside the problems)
        self.warnings = list(warnings or [])
        shown = "; ".join(str(p) for p in problems[:20])
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{len(problems)} {noun}: {shown}{more}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": str(self), "problems": [p.to_dict() for p in self.problems]}
        if self.warnings:
            out["warnings"] = [w.to_dict() for w in self.warnings]
        return out
