"""An input's text with the planner's problems and warnings beside the lines they point to."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

#: a file up to this many lines is shown whole; a longer one only around its notes
WHOLE = 400
#: lines shown before and after a noted line in a longer file
CONTEXT = 3


@dataclasses.dataclass(frozen=True)
class Note:
    """A problem (``kind`` "problem") or a warning about one line."""

    kind: str
    code: str
    message: str
    task: str | None = None
    #: the line it is shown beside (its own, or its task's first line)
    line: int | None = None


@dataclasses.dataclass(frozen=True)
class Line:
    number: int
    text: str
    notes: list[Note]


@dataclasses.dataclass(frozen=True)
class Listing:
    """Runs of consecutive lines (a gap between runs is left out) and the notes that point to
    no line of the file."""

    runs: list[list[Line]]
    unplaced: list[Note]


def lines_of(content: bytes) -> list[str]:
    """The file's lines as the planner counts them (from 1): split at line feeds, a carriage
    return before one dropped, bytes that are not UTF-8 shown as replacement characters."""
    text = content.decode("utf-8", "replace").removeprefix("\ufeff")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


@functools.lru_cache(maxsize=8)
def task_lines(content: bytes) -> dict[str, int]:
    """Where each task of a YAML or JSON task file starts (line from 1), read from the
    document's structure (composed, never constructed): in such a file the planner names the
    task a problem is about, not its line. Empty for any other file."""
    try:
        root = yaml.compose(content.decode("utf-8", "replace").removeprefix("\ufeff"),
                            Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return {}
    if isinstance(root, yaml.MappingNode):
        root = next((v for k, v in root.value
                     if isinstance(k, yaml.ScalarNode) and k.value == "tasks"), None)
    if not isinstance(root, yaml.SequenceNode):
        return {}
    out: dict[str, int] = {}
    for item in root.value:
        if not isinstance(item, yaml.MappingNode):
            continue
        for k, v in item.value:
            if (isinstance(k, yaml.ScalarNode) and k.value == "id"
                    and isinstance(v, yaml.ScalarNode)):
                out.setdefault(str(v.value), item.start_mark.line + 1)
    return out


def _line(item: Mapping[str, Any], tasks: Mapping[str, int], count: int) -> int | None:
    """The line a problem or warning points to: its own, else its task's (None: none of the
    file's lines)."""
    n = item.get("line")
    if not isinstance(n, int) and item.get("task") is not None:
        n = tasks.get(str(item["task"]))
    return n if isinstance(n, int) and 1 <= n <= count else None


def _note(kind: str, item: dict[str, Any]) -> Note:
    task = item.get("task")
    return Note(kind=kind, code=str(item.get("code", "")), message=str(item.get("message", "")),
                task=None if task is None else str(task))


def annotate(content: bytes, problems: Sequence[dict[str, Any]],
             warnings: Sequence[dict[str, Any]] = (), *, whole: int = WHOLE,
             context: int = CONTEXT) -> Listing:
    """The lines to show, each with its notes (problems first), and the notes of no line. A
    note without a line but about a task goes beside that task's first line."""
    lines = lines_of(content)
    by_line: dict[int, list[Note]] = {}
    unplaced: list[Note] = []
    lineless = any(x.get("line") is None and x.get("task") is not None
                   for x in [*problems, *warnings])
    tasks = task_lines(content) if lineless else {}
    for kind, items in (("problem", problems), ("warning", warnings)):
        for item in items:
            n = _line(item, tasks, len(lines))
            if n is None:
                unplaced.append(_note(kind, item))
            else:
                by_line.setdefault(n, []).append(dataclasses.replace(_note(kind, item), line=n))
    if len(lines) <= whole:
        wanted = list(range(1, len(lines) + 1))
    else:
        wanted = sorted({k for n in by_line for k in range(max(1, n - context),
                                                             min(len(lines), n + context) + 1)})
    runs: list[list[Line]] = []
    for n in wanted:
        line = Line(n, lines[n - 1], by_line.get(n, []))
        if runs and runs[-1][-1].number == n - 1:
            runs[-1].append(line)
        else:
            runs.append([line])
    return Listing(runs=runs, unplaced=unplaced)
