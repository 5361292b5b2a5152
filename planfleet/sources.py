"""Which *source* an input belongs to: the lineage its versions form.

A source key is text with a kind prefix:

==================================  ===========================================================
``key:<value>``                     the file declares it: a top-level ``source: <value>`` in the
                                    native YAML/JSON format (whatever the file's name or path
                                    of arrival; it wins over everything below)
``youtrack:<project>[?<query>]``    a file ``planfleet pull youtrack`` wrote (its envelope
                                    names the project and the extra search terms)
``file:<name>``                     a file dropped into the watch dir, by its name
``upload:<filename>``               a file posted to ``POST /api/inputs?filename=…``
==================================  ===========================================================

:func:`of_input` is the one place that decides; it reads only the bytes and the name (no
database, no clock), so the watcher, the API and the tests agree. The planner checks that what
it parses declares the same source as :func:`declared` read (a ``source:`` written in a way
this quick look cannot read is a field error, not a silent second lineage).
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any

import yaml

#: ``source_dir`` of inputs uploaded through the API (not read from a folder).
UPLOAD_DIR = "upload:"
#: Longest explicit ``source:`` value accepted.
MAX_KEY_LENGTH = 200
#: Longest YouTrack search terms a source key carries.
MAX_QUERY_LENGTH = 1000
#: The kinds of source, as their key prefixes.
KINDS = ("key", "youtrack", "file", "upload")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACE = re.compile(r"\s+")
#: a top-level ``source:`` line of a YAML document (column 0, optionally quoted)
_YAML_SOURCE = re.compile(r"""^(?:source|"source"|'source')[ \t]*:(?P<value>.*)$""", re.MULTILINE)


class Intake(enum.StrEnum):
    """How an input arrived."""

    WATCH_DIR = "file"
    UPLOAD = "upload"


def check_key(value: Any) -> str:
    """An explicit ``source:`` value: non-empty text (or an integer) of at most
    :data:`MAX_KEY_LENGTH` characters, without control characters; ValueError says why."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"must be text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError("is empty")
    if len(text) > MAX_KEY_LENGTH:
        raise ValueError(f"is {len(text)} characters long (at most {MAX_KEY_LENGTH})")
    if _CONTROL.search(text):
        raise ValueError("contains control characters")
    return text


def explicit(value: str) -> str:
    """The source key of an explicit ``source:`` value."""
    return f"key:{value}"


def normalise_query(query: str | None) -> str:
    """YouTrack search terms as a source key holds them: blanks collapsed, ends trimmed."""
    return _SPACE.sub(" ", query or "").strip()


def youtrack(project: str, query: str | None = None) -> str:
    """The source key of a YouTrack pull of ``project`` narrowed by ``query``."""
    terms = normalise_query(query)
    return f"youtrack:{project.strip()}" + (f"?{terms}" if terms else "")


def of_intake(intake: Intake, name: str) -> str:
    """The source key of a file that declares none: its name, by the way it arrived."""
    return f"{intake.value}:{name}"


def intake_of_dir(source_dir: str) -> Intake:
    """The intake of an input recorded with ``source_dir``."""
    return Intake.UPLOAD if source_dir == UPLOAD_DIR else Intake.WATCH_DIR


def of_input(intake: Intake, name: str, content: bytes | None) -> str:
    """The source key of an input: what its bytes declare (:func:`declared`), else its name
    by the way it arrived. A refused file (no bytes) belongs to its name's source."""
    found = declared(content, name) if content is not None else None
    return found or of_intake(intake, name)


#: what a declaration holds; a file without any of these declares nothing (and is not parsed)
_MARKS = (b'"source"', b"source:", b"'source'", b'"youtrack"')


def declared(content: bytes, filename: str = "tasks") -> str | None:
    """The source a task file named ``filename`` declares, read quickly (without planning
    it): a JSON object's top-level ``source`` (or a YouTrack envelope's ``project`` and
    ``query``), or a YAML document's top-level ``source:`` line. None when it declares none,
    is a markdown task list (which has no such key), or says it in a way this does not read
    (the planner then names the problem)."""
    if not any(mark in content for mark in _MARKS):
        return None  # the common case: nothing to look for, nothing parsed
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    from planfleet.planner import formats  # the planner's own format detection

    if formats.detect(filename, text) == "tasks.md":
        return None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return from_document(data) if isinstance(data, dict) else None
    if text.lstrip().startswith("["):
        return None
    m = _YAML_SOURCE.search(text)
    if m is None:
        return None
    try:
        one = yaml.safe_load("source:" + m.group("value"))
    except yaml.YAMLError:
        return None
    if not isinstance(one, dict):
        return None
    return from_document({"source": one.get("source")})


def from_document(data: dict[str, Any]) -> str | None:
    """The source a parsed top-level mapping declares (None: none, or not a valid one)."""
    if data.get("format") == "youtrack" and "project" in data:
        project, query = data.get("project"), data.get("query")
        if (not isinstance(project, str) or not project.strip() or _CONTROL.search(project)
                or (query is not None and not isinstance(query, str))
                or len(normalise_query(query)) > MAX_QUERY_LENGTH):
            return None
        return youtrack(project, query)
    if "source" not in data:
        return None
    try:
        return explicit(check_key(data["source"]))
    except ValueError:
        return None


def parse_argument(text: str) -> tuple[str | None, str]:
    """What a person typed to name a source: ``(key, name)`` — ``key`` when ``text`` starts
    with a kind prefix (``file:``, ``upload:``, ``youtrack:``, ``key:``), else None; ``name``
    is ``text`` as a plain file name (a key may also be a file name)."""
    kind, sep, rest = text.partition(":")
    return (text if sep and rest and kind in KINDS else None), text
