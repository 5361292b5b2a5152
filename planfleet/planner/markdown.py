"""Markdown task lists: spec-kit ``tasks.md`` (``T001`` ids) and Kiro-style numbered tasks.

The reading is in two steps, both pure: :func:`scan` walks the lines once and records what each
line is (a task, a done task, a task body line, a dependency statement, a line that looks like a
task but cannot be read) and :func:`build` turns that into dependencies:

* phases run in order; inside a phase (and inside each of its sub-sections) a task without
  ``[P]`` waits for everything before it, a ``[P]`` task only for the last task without ``[P]``;
* spec-kit's own template rule: user-story phases (``## Phase 3: User Story 1 …``) wait for the
  phase before the first of them (Foundational) and may run in parallel with each other; the
  next phase that is not a story waits for all of them;
* explicit dependencies (``(depends on T001)``, ``Blocked by T002``, ``**Dependencies**: T003``,
  a Dependencies section's ``T011 blocks T014–T017`` or ``Phase 4 depends on Phase 3``) are
  added to that order; where they contradict it (a task depending on a later one), the
  explicit dependency wins and the order edge that would close a cycle is dropped, with a
  warning;
* done tasks (``[x]``, ``Status: done``) are left out; a dependency on one is met.

Nothing that looks like a task is dropped silently: it is a task, a done task, a warning naming
its line, or an error.
"""

from __future__ import annotations

import dataclasses
import heapq
import re
from typing import Any

from planfleet.planner.errors import Problem

#: A spec-kit id: ``T001``, sub-ids ``T005.1``, suffixed ``T053a``, ``T058-test``.
ID = r"T\d+(?:\.\d+)*[a-z]?(?:-[a-z][a-z0-9]*)?"
_ID_RE = re.compile(rf"\b({ID})\b")
_DECOR = r"(?:\*\*|__|`|\*)?"
_BULLET = re.compile(r"^(?P<indent>[ \t]*)(?:[-*+]|\d+[.)])[ \t]+(?P<body>.*)$")
_CHECKBOX = re.compile(r"^\[(?P<done>[ xX~\-/]?)\][ \t]*(?P<rest>.*)$")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})[ \t]+(?P<title>.*?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})")
#: an id at the start of a task's text; a capital right after it starts the title ("T018Run …")
_LEAD_ID = re.compile(rf"^{_DECOR}\[?(?P<id>{ID})\]?{_DECOR}(?![a-z0-9_.-]*[a-z0-9_])(?P<rest>.*)$")
#: Something that tries to be an id and is not one (``TXXX``, ``T-001``, ``T 001``, ``TBD``).
_BAD_ID = re.compile(r"^[*_`\[]*(?:T[A-Z]{2,}\b|T[-_ ]\d+|T\d+[A-Z]\b|T\d+\.\D)")
_KIRO_LEAD = re.compile(r"^(?P<id>\d+(?:\.\d+)*)\.?(?=[ \t])(?P<rest>.*)$")
_PARALLEL = re.compile(r"\[P(?::[^\]]*)?\]|\(P\)")
_MARKER = re.compile(r"^[ \t]*(?:\[[^\]]{1,20}\]|\(P\))")
_STORY = re.compile(r"\[(US\d+)\]")
_STATUS_DONE = re.compile(
    r"^\W*status\W*:\W*(?:✅|☑|\[x\]|done\b|complete[d]?\b|finished\b|closed\b)", re.IGNORECASE)
_DONE_TICK = re.compile(r"✅|\((?:done|completed?)\)|\[(?:done|completed?)\]", re.IGNORECASE)
_BODY_DONE = re.compile(r"^(?:done|completed?|finished)\b", re.IGNORECASE)
#: "this task waits for …" and "… waits for this task" phrases.
_AFTER_WORDS = (r"depends?\s+on|dependencies|dependency|depends|requires|"
                r"blocked\s+by|prerequisites?|after|needs|waits?\s+(?:for|on)")
_BEFORE_WORDS = r"blocks|unblocks|required\s+by|is\s+required\s+for|before"
_PHRASE = re.compile(
    rf"(?P<word>\b(?:{_AFTER_WORDS})\b|\b(?:{_BEFORE_WORDS})\b)[*_`\s]*(?::[*_`\s]*)?",
    re.IGNORECASE)
_BEFORE = re.compile(rf"^(?:{_BEFORE_WORDS})$", re.IGNORECASE)
_RANGE_SEP = r"\s*(?:-|–|—|\.\.|to|through)\s*"
_PHASE_REF = re.compile(r"\b(?:phase\s+(?P<phase>\d+(?:\.\d+)?)|(?:user\s+story\s+|US)(?P<story>\d+))\b",
                        re.IGNORECASE)
_STORY_PHASE = re.compile(r"\buser\s+stor(?:y|ies)\s*\d+|\bUS\s?\d+\b|\bstory\s+\d+", re.IGNORECASE)
_DEP_SECTION = re.compile(r"depend|execution\s+order|order\s+of\s+execution", re.IGNORECASE)


@dataclasses.dataclass
class Item:
    """One task as read from the file."""

    id: str
    line: int
    title: str
    done: bool
    parallel: bool
    phase: int  # index into Scan.phases
    section: int  # sub-section counter (a barrier inside a phase)
    story: str | None = None
    after: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (phrase text, line)
    before: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    heading: bool = False


@dataclasses.dataclass
class Phase:
    title: str
    line: int
    story: bool
    number: str | None
    story_number: str | None


@dataclasses.dataclass
class Scan:
    """What every line of the file is."""

    kind: str  # "tasks.md" or "kiro"
    items: list[Item]
    phases: list[Phase]
    #: line -> why it is not a task although it looks like one (these become warnings)
    unread: dict[int, str]
    #: lines that are part of a task (its body, sub-bullets, wrapped text)
    body: set[int]
    #: Dependencies-section statements: (subject text, word, object text, line)
    statements: list[tuple[str, str, str, int]]
    problems: list[Problem]
    warnings: list[Problem]
    #: checkbox lines without a task id (not planned)
    no_id: int = 0


def _clause(text: str) -> str:
    """``text`` up to the end of its clause (``;``, `` - ``, ``. ``, an unopened ``)``)."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return text[:i]
            depth -= 1
        elif ch in ";|" or (ch == "." and text[i + 1:i + 2] in (" ", "")
                            and not text[i - 1:i].isdigit()):
            return text[:i]
        elif text.startswith((" - ", " — ", " but ", " and then "), i):
            return text[:i]
    return text


def id_refs(text: str) -> list[tuple[str, str | None]]:
    """Ids and ranges in ``text``: ``[(first, last or None), …]``."""
    out: list[tuple[str, str | None]] = []
    pattern = re.compile(rf"\b({ID})\b(?:{_RANGE_SEP}\b({ID})\b)?")
    for m in pattern.finditer(text):
        out.append((m.group(1), m.group(2)))
    return out


_KIRO_LIST = re.compile(
    r"^[\s*_`]*(?:tasks?\s*)?(?P<list>\d+(?:\.\d+)*(?:\s*(?:,|and|&|-|–)\s*(?:tasks?\s*)?"
    r"\d+(?:\.\d+)*)*)(?![\w.]*\w)", re.IGNORECASE)


def kiro_refs(text: str) -> list[tuple[str, str | None]]:
    """Kiro ids right after a phrase ("depends on 1.2, 1.3", "after task 2"): plain numbers
    elsewhere in prose are not taken for tasks."""
    m = _KIRO_LIST.match(text)
    if not m:
        return []
    out: list[tuple[str, str | None]] = []
    for r in re.finditer(r"(\d+(?:\.\d+)*)(?:\s*(?:-|–)\s*(\d+(?:\.\d+)*))?", m.group("list")):
        out.append((r.group(1), r.group(2)))
    return out


_NEGATED = re.compile(r"\b(?:no|not|without|none|zero)\W*$", re.IGNORECASE)


def _matches(text: str) -> list[re.Match[str]]:
    """The dependency phrases of ``text``, leaving out negated ones ("no dependencies on")."""
    return [m for m in _PHRASE.finditer(text)
            if not _NEGATED.search(text[max(0, m.start() - 12):m.start()])]


def phrases(text: str) -> tuple[list[str], list[str]]:
    """The clauses of ``text`` naming what a task waits for, and what waits for it."""
    after: list[str] = []
    before: list[str] = []
    for m in _matches(text):
        clause = _clause(text[m.end():])
        (before if _BEFORE.match(m.group("word").strip()) else after).append(clause)
    return after, before


def _strip_markers(rest: str) -> tuple[str, bool, str | None]:
    """Title, parallel mark, story of a task's text after its id."""
    parallel = False
    story = None
    text = rest.strip()
    text = re.sub(r"^[:.\-–—]\s+", "", text)
    while True:
        m = _MARKER.match(text)
        if not m:
            break
        marker = m.group(0).strip()
        if _PARALLEL.fullmatch(marker):
            parallel = True
        elif _STORY.fullmatch(marker):
            story = marker[1:-1]
        elif not re.fullmatch(r"\[[A-Za-z0-9 _.:-]+\]", marker):
            break
        text = text[m.end():].lstrip()
        text = re.sub(r"^[:.\-–—]\s+", "", text)
    tail = re.search(rf"\s*(?:{_PARALLEL.pattern})\s*$", text)
    if tail:
        parallel = True
        text = text[:tail.start()]
    return text.strip(), parallel, story


def scan(text: str) -> Scan:
    """Classify every line; see the module's docstring."""
    lines = text.splitlines()
    has_t_ids = False
    kiro_lines = 0
    fence: str | None = None
    for line in lines:
        f = _FENCE.match(line)
        if f:
            fence = None if fence and f.group("fence").startswith(fence) else fence or f.group("fence")[:3]
            continue
        if fence:
            continue
        b = _BULLET.match(line)
        body = b.group("body") if b else None
        h = _HEADING.match(line)
        if body is not None:
            c = _CHECKBOX.match(body)
            if c and _LEAD_ID.match(c.group("rest")):
                has_t_ids = True
            elif c and _KIRO_LEAD.match(c.group("rest")):
                kiro_lines += 1
        elif h and _LEAD_ID.match(h.group("title")):
            has_t_ids = True
    kind = "tasks.md" if has_t_ids or not kiro_lines else "kiro"
    return _scan(lines, kind)


def _scan(lines: list[str], kind: str) -> Scan:
    sc = Scan(kind=kind, items=[], phases=[], unread={}, body=set(), statements=[], problems=[],
              warnings=[])
    lead = _LEAD_ID if kind == "tasks.md" else _KIRO_LEAD
    phase_level = _phase_level(lines)
    fence: str | None = None
    section = 0
    current: Item | None = None  # the task later lines may belong to
    current_indent = -1
    dep_level: int | None = None  # heading level of a Dependencies section we are in
    prev_blank = True
    no_id: dict[int, list[int]] = {}  # heading line -> checkbox lines without an id
    section_head = 0
    for lineno, line in enumerate(lines, start=1):
        f = _FENCE.match(line)
        if f:
            fence = None if fence and f.group("fence").startswith(fence) else fence or f.group("fence")[:3]
            prev_blank = False
            continue
        if fence:
            continue
        if not line.strip():
            prev_blank = True
            continue
        h = _HEADING.match(line)
        if h:
            level = len(h.group("hashes"))
            title = h.group("title")
            m = lead.match(title) if kind == "tasks.md" else None
            if m:
                item = _item(sc, m.group("id"), m.group("rest"), lineno, section, heading=True)
                current, current_indent = item, -1
                prev_blank = False
                continue
            if kind == "tasks.md" and _BAD_ID.match(title):
                sc.unread[lineno] = f"heading {title[:60]!r} has no readable task id (T001, T005.1, T053a)"
            current = None
            if dep_level is not None and level <= dep_level:
                dep_level = None
            if _DEP_SECTION.search(title):
                dep_level = level
            if level <= phase_level:
                num = re.search(r"\bphase\s+(\d+(?:\.\d+)?)", title, re.IGNORECASE)
                story = re.search(r"\b(?:user\s+story\s+|US\s?)(\d+)", title, re.IGNORECASE)
                sc.phases.append(Phase(title, lineno, bool(_STORY_PHASE.search(title)),
                                       num.group(1) if num else None,
                                       story.group(1) if story else None))
            section += 1
            section_head = lineno
            prev_blank = False
            continue
        b = _BULLET.match(line)
        indent = len(b.group("indent").expandtabs(4)) if b else len(line) - len(line.lstrip())
        c = _CHECKBOX.match(b.group("body")) if b else None
        if c:
            rest = c.group("rest")
            m = lead.match(rest)
            nested = current is not None and (current.heading or indent > current_indent)
            if m:
                done = c.group("done") in ("x", "X")
                if kind == "kiro" and current is not None and m.group("id").startswith(current.id + "."):
                    # a parent: its sub-tasks are the tasks
                    sc.body.add(current.line)
                    sc.items.remove(current)
                item = _item(sc, m.group("id"), m.group("rest"), lineno, section, done=done)
                current, current_indent = item, indent
                prev_blank = False
                continue
            if nested:
                assert current is not None
                sc.body.add(lineno)
                if current.heading and c.group("done") in ("x", "X") and _BODY_DONE.match(rest):
                    current.done = True
                _phrases_into(current, rest, lineno)
                prev_blank = False
                continue
            if _BAD_ID.match(rest):
                sc.unread[lineno] = f"task line {rest[:60]!r} has no readable id (T001, T005.1, T053a)"
            else:
                no_id.setdefault(section_head, []).append(lineno)
            current = None
            prev_blank = False
            continue
        # a line that is not a task: a task's body, a dependency statement, or prose
        belongs = current is not None and (
            current.heading or indent > current_indent or (not prev_blank and not b))
        if belongs:
            assert current is not None
            sc.body.add(lineno)
            if current.heading and _STATUS_DONE.match(line.strip()):
                current.done = True
            _phrases_into(current, line, lineno)
        elif dep_level is not None:
            _statement(sc, line, lineno)
            current = None
        else:
            current = None
        prev_blank = False
    sc.no_id = sum(len(v) for v in no_id.values())
    for head, found in no_id.items():
        if not sc.items:
            break
        where = f"under {lines[head - 1].strip()[:60]!r}" if head else "before the first heading"
        shown = ", ".join(map(str, found[:10])) + (", …" if len(found) > 10 else "")
        sc.warnings.append(Problem(
            "not_a_task", f"{len(found)} checkbox line{'s' if len(found) != 1 else ''} without a "
            f"task id {where} (line{'s' if len(found) != 1 else ''} {shown}) not planned",
            line=found[0]))
        for n in found:
            sc.unread.setdefault(n, "checkbox without a task id")
    return sc


def _phase_level(lines: list[str]) -> int:
    """The heading level of the file's phases (the first heading naming a phase), else 2."""
    for line in lines:
        h = _HEADING.match(line)
        if h and re.search(r"\bphase\b", h.group("title"), re.IGNORECASE) and len(h.group("hashes")) > 1:
            return len(h.group("hashes"))
    return 2


def _item(sc: Scan, task_id: str, rest: str, lineno: int, section: int, *, done: bool = False,
          heading: bool = False) -> Item:
    title, parallel, story = _strip_markers(rest)
    if _DONE_TICK.search(title) and heading:
        done = True
        title = _DONE_TICK.sub("", title).strip()
    item = Item(task_id, lineno, title, done, parallel, len(sc.phases) - 1, section,
                story=story, heading=heading)
    _phrases_into(item, rest, lineno)
    sc.items.append(item)
    return item


def _phrases_into(item: Item, text: str, lineno: int) -> None:
    after, before = phrases(text)
    item.after += [(a, lineno) for a in after]
    item.before += [(b, lineno) for b in before]


def _statement(sc: Scan, line: str, lineno: int) -> None:
    """A Dependencies-section line: its last phrase with something named on both sides
    (``Phase 3: Unblocks after Phase 2`` is read at ``after``)."""
    if line.lstrip().startswith("|"):
        return  # a table row: no reading of its columns is safe
    segments = re.split(r"→|->|⟶", line)
    if len(segments) > 1:
        # a chain: "T014/T015 → T016 (depends on both) → T017", "Setup (T001-T003) →
        # Foundational (T004-T009) → …": each step's ids (outside parentheses if it has any
        # there) wait for the step before when both name tasks
        steps = []
        for seg in segments:
            outside = re.sub(r"\([^)]*\)?", "", seg)
            steps.append(outside if id_refs(outside) else seg if id_refs(seg) else "")
        if any(a and b for a, b in zip(steps, steps[1:], strict=False)):
            sc.statements.append(("→".join(steps), "→", "", lineno))
            return
    found = _matches(line)
    for m in reversed(found):
        # the line's topic is what stands before its first phrase
        subject, obj = line[:found[0].start()], _clause(line[m.end():])
        if (id_refs(subject) or _PHASE_REF.search(subject)) and (
                id_refs(obj) or _PHASE_REF.search(obj)):
            sc.statements.append((subject, m.group("word").strip(), obj, lineno))
            return



# -- dependencies ------------------------------------------------------------------------------


def _key(task_id: str) -> tuple[Any, ...]:
    """Sort key of an id: ``T005`` < ``T005.1`` < ``T005a`` < ``T005a-test`` < ``T006``."""
    m = re.fullmatch(r"T(\d+)((?:\.\d+)*)([a-z]?)(-[a-z0-9]+)?", task_id)
    if not m:
        parts = task_id.split(".")
        return (0, tuple(int(x) if x.isdigit() else 0 for x in parts), "", "")
    subs = tuple(int(x) for x in m.group(2).split(".")[1:])
    return (int(m.group(1)), subs, m.group(3), m.group(4) or "")


@dataclasses.dataclass
class Built:
    """Open tasks with their dependencies, and the ids left out as done."""

    tasks: list[tuple[Item, list[str]]]
    done: list[Item]
    problems: list[Problem]
    warnings: list[Problem]


def build(sc: Scan) -> Built:
    problems = list(sc.problems)
    warnings = list(sc.warnings)
    refs = id_refs if sc.kind == "tasks.md" else kiro_refs
    items: list[Item] = []
    seen: dict[str, Item] = {}
    for item in sc.items:
        first = seen.get(item.id)
        if first is None:
            seen[item.id] = item
            items.append(item)
        elif first.title == item.title:
            warnings.append(Problem("repeated_task", f"{item.id} is repeated (same text as line "
                                    f"{first.line}); the repetition is ignored",
                                    task=item.id, line=item.line))
            sc.body.add(item.line)
        else:
            problems.append(Problem("duplicate_id", f"{item.id} is also defined on line "
                                    f"{first.line}", task=item.id, line=item.line))
    done = {i.id for i in items if i.done}
    order = {i.id: n for n, i in enumerate(items)}
    keys = sorted(order, key=_key)

    def expand(text: str) -> list[str]:
        out: list[str] = []
        for first, last in refs(text):
            if last is None:
                out.append(first)
                continue
            lo, hi = _key(first), _key(last)
            if lo > hi:
                lo, hi = hi, lo
            inside = [k for k in keys if lo <= _key(k) <= hi]
            out += [first] + [k for k in inside if k not in (first, last)] + [last]
        return out

    implicit: dict[str, set[str]] = {i.id: set() for i in items}
    explicit: dict[str, set[str]] = {i.id: set() for i in items}
    phase_end: dict[int, set[str]] = {}
    gate: set[str] = set()
    group: set[str] = set()
    foundation: set[str] = set()
    story_ends: set[str] = set()
    phase_idx: int | None = None
    section: int | None = None
    by_phase: dict[int, list[str]] = {}

    def is_story(p: int | None) -> bool:
        return p is not None and 0 <= p < len(sc.phases) and sc.phases[p].story

    for item in items:
        if sc.kind == "kiro":
            # Kiro tasks run in their order
            if not item.done:
                implicit[item.id] |= gate
                gate = {item.id}
            continue
        if item.phase != phase_idx:
            end = gate | group
            if phase_idx is not None:
                phase_end[phase_idx] = end
                if is_story(phase_idx):
                    story_ends |= end
            for p in range((phase_idx if phase_idx is not None else -1) + 1, item.phase):
                phase_end.setdefault(p, end)  # phases without a task end where they began
            if is_story(item.phase):
                if not is_story(phase_idx):
                    foundation, story_ends = end, set()
                gate = set(foundation)
            elif is_story(phase_idx):
                gate = story_ends | end
            else:
                gate = end
            group = set()
            phase_idx, section = item.phase, item.section
        elif item.section != section:
            gate, group = gate | group, set()
            section = item.section
        by_phase.setdefault(item.phase, []).append(item.id)
        if item.done:
            # a done task is left out; what it waited for still gates the tasks after it
            if not item.parallel:
                gate, group = gate | group, set()
            continue
        implicit[item.id] |= gate
        if not item.parallel:
            implicit[item.id] |= group
            gate, group = {item.id}, set()
        else:
            group.add(item.id)
    if phase_idx is not None:
        phase_end[phase_idx] = gate | group
    for item in items:
        for text, _ in item.after:
            explicit[item.id].update(d for d in expand(text) if d != item.id)
        for text, _ in item.before:
            for other in expand(text):
                if other in explicit and other != item.id:
                    explicit[other].add(item.id)
    for subject, word, obj, _lineno in sc.statements:
        if word == "→":
            chain = [expand(part) for part in subject.split("→")]
            for a, b in zip(chain, chain[1:], strict=False):
                for x in b:
                    if x in explicit:
                        explicit[x].update(d for d in a if d != x)
            continue
        left, right = expand(subject), expand(obj)
        if _BEFORE.match(word):
            left, right = right, left
        if left and right:
            for x in left:
                if x in explicit:
                    explicit[x].update(d for d in right if d != x)
            continue
        if left or right:
            continue
        # phase-level: "Phase 4 depends on Phase 3", "User Story 2 … after User Story 1"
        subj = _phase_refs(sc, subject)
        objs = _phase_refs(sc, obj)
        if _BEFORE.match(word):
            subj, objs = objs, subj
        for p in subj:
            for q in objs:
                if p == q:
                    continue
                needs = phase_end.get(q, set())
                for x in by_phase.get(p, []):
                    explicit[x] |= needs
    # done tasks are met; unknown ids stay (the planner names them)
    deps: dict[str, set[str]] = {}
    for item in items:
        if item.done:
            continue
        deps[item.id] = {d for d in implicit[item.id] | explicit[item.id]
                         if d not in done and d != item.id}
    _explicit_wins(deps, implicit, explicit, items, warnings)
    return Built(
        tasks=[(i, sorted(deps[i.id], key=lambda d: order.get(d, len(order)))) for i in items
               if not i.done],
        done=[i for i in items if i.done], problems=problems, warnings=warnings)


def _phase_refs(sc: Scan, text: str) -> list[int]:
    out: list[int] = []
    for m in _PHASE_REF.finditer(text):
        for n, ph in enumerate(sc.phases):
            if (m.group("phase") and ph.number == m.group("phase")) or (
                    m.group("story") and ph.story_number == m.group("story")):
                out.append(n)
                break
    return out


def _explicit_wins(deps: dict[str, set[str]], implicit: dict[str, set[str]],
                   explicit: dict[str, set[str]], items: list[Item],
                   warnings: list[Problem]) -> None:
    """Where an explicit dependency contradicts the file's order (a task depending on a later
    one), the explicit dependency wins: the tasks are ordered by their explicit dependencies
    first and by their place in the file among equals, and an order edge that would run
    against that is replaced by what it waited for in turn, with a warning."""
    index = {i.id: n for n, i in enumerate(items)}
    nodes = [i.id for i in items if i.id in deps]
    forced = {a: {b for b in explicit.get(a, set()) & deps[a] if b in deps} for a in nodes}
    if not any(index[b] > index[a] for a in nodes for b in forced[a]):
        return  # every explicit dependency points backwards: the file's order stands
    waiting: dict[str, int] = {a: len(forced[a]) for a in nodes}
    followers: dict[str, list[str]] = {a: [] for a in nodes}
    for a in nodes:
        for b in forced[a]:
            followers[b].append(a)
    ready = [(index[a], a) for a in nodes if not waiting[a]]
    heapq.heapify(ready)
    pos: dict[str, int] = {}
    while ready:
        _, a = heapq.heappop(ready)
        pos[a] = len(pos)
        for f in followers[a]:
            waiting[f] -= 1
            if not waiting[f]:
                heapq.heappush(ready, (index[f], f))
    if len(pos) < len(nodes):
        return  # explicit dependencies in a cycle: the planner names it
    line = {i.id: i.line for i in items}
    for a in sorted(nodes, key=pos.__getitem__):
        for b in sorted(deps[a], key=lambda d: index.get(d, -1)):
            if b not in pos or pos[b] < pos[a] or b in forced[a]:
                continue
            deps[a].discard(b)
            # what b waited for in turn, as far as it comes before a
            deps[a].update(d for d in deps[b] if d in pos and pos[d] < pos[a] and d != a)
            warnings.append(Problem(
                "order_overridden", f"{a} no longer waits for {b}, listed before it: explicit "
                f"dependencies put {b} after {a}", task=a, line=line.get(a)))
