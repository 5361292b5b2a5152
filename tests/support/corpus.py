"""A corpus of malformed task files (and valid ones beside them) for the fleet to chew on.

:func:`write_corpus` fills a folder and returns which names are valid and which are bad, with
the words the error of each bad one must contain.
"""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import yaml

from planfleet import names


def valid_doc(i: int, record_dir: str) -> dict[str, object]:
    n = 2 + i % 4
    return {"tasks": [{"id": f"V{i}-{k}", "estimate": 5 + k, "script": "f/test/work",
                       "args": {"sleep": 0, "record_dir": record_dir},
                       "depends_on": [f"V{i}-{k - 1}"] if k else []} for k in range(n)]}


def write_corpus(folder: Path, record_dir: str, *, seed: int = 7,
                 valid: int = 50) -> tuple[set[str], dict[str, str]]:
    """(valid names, {bad name: text its error must contain})."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    good: set[str] = set()
    bad: dict[str, str] = {}

    def put(name: str | bytes, data: bytes, expect: str | None) -> None:
        """Write ``data`` as ``name`` (bytes: a name that need not be UTF-8, as zip archives
        and old shares produce; it is then known by its escaped form)."""
        if isinstance(name, bytes):
            with open(os.path.join(os.fsencode(folder), name), "wb") as fh:
                fh.write(data)
            name = names.display(os.fsdecode(name))
        else:
            (folder / name).write_bytes(data)
        if expect is None:
            good.add(name)
        else:
            bad[name] = expect

    for i in range(valid):
        doc = valid_doc(i, record_dir)
        if i % 5 == 0:  # some with a BOM, some in JSON, some with unicode ids
            put(f"valid-{i}.yaml", b"\xef\xbb\xbf" + yaml.safe_dump(doc).encode(), None)
        elif i % 5 == 1:
            put(f"valid-{i}.json", json.dumps(doc).encode(), None)
        elif i % 5 == 2:
            for t in doc["tasks"]:  # type: ignore[attr-defined]
                t["id"] = "задача-" + t["id"] + "-✓"
                t["depends_on"] = ["задача-" + d + "-✓" for d in t["depends_on"]]
            put(f"valid-{i}.yaml", yaml.safe_dump(doc, allow_unicode=True).encode(), None)
        elif i % 5 == 3 and i % 2:  # a name that is not UTF-8 (Latin-1 bytes)
            put(b"valid-\xe9t\xe9-%d.yaml" % i, yaml.safe_dump(doc).encode(), None)
        else:
            put(f"valid-{i}.yaml", yaml.safe_dump(doc).encode(), None)

    sample = yaml.safe_dump(valid_doc(999, record_dir)).encode()
    sample_json = json.dumps(valid_doc(998, record_dir)).encode()
    id_at = sample.index(b"id: V999-0")
    for i in range(260):  # truncated JSON (anywhere) and YAML (before the first id)
        src = sample_json if i % 2 else sample
        cut = rng.randrange(1, len(src) - 1 if i % 2 else id_at)
        put(f"truncated-{i}.{'json' if i % 2 else 'yaml'}", src[:cut], "")
    for i in range(150):  # binary noise
        put(f"noise-{i}.yaml", os.urandom(rng.randrange(1, 4096)), "")
    for i in range(60):  # invalid UTF-8
        put(f"latin1-{i}.yaml", "tasks: [{id: café-%d}]\n".encode("latin-1") % i + b"\xff\xfe",
            "not UTF-8")
    for i in range(20):  # a BOM and nothing else
        put(f"bom-{i}.yaml", b"\xef\xbb\xbf" + b" " * i, "empty")
    for i in range(20):
        put(f"empty-{i}.yaml", b"" if i % 2 else b"\n\n  \n", "empty")
    for i in range(10):  # nesting 10,000 deep
        depth = 10_000 + i
        data = (b"[" * depth + b"]" * depth) if i % 2 else (b"tasks: " + b"[" * depth
                                                              + b"]" * depth)
        put(f"deep-{i}.{'json' if i % 2 else 'yaml'}", data, "")
    for i in range(10):  # YAML alias bombs
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
        for k in range(1, 14 + i):  # 9 aliases a level: over the limit of 100 in all
            lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
        lines.append(f"tasks: *a{13 + i}")
        put(f"bomb-{i}.yaml", "\n".join(lines).encode(), "alias")
    for i in range(2):  # 100k dependencies on tasks that do not exist
        doc = {"tasks": [{"id": "A", "depends_on": [f"missing-{k}" for k in range(100_000)]}]}
        put(f"deps100k-{i}.json", json.dumps(doc).encode(), "unknown task")
    for length in range(1, 251):  # cycles of every length
        tasks = [{"id": f"C{k}", "depends_on": [f"C{(k + 1) % length}"]} for k in range(length)]
        put(f"cycle-{length}.yaml", yaml.safe_dump({"tasks": tasks}).encode(),
            "depends on itself" if length == 1 else "cycle")
    wrong = [
        ({"tasks": "not a list"}, ""), ({"tasks": [{"id": ["a", "b"]}]}, "id"),
        ({"tasks": [{"id": "A", "estimate": "soon"}]}, "estimate"),
        ({"tasks": [{"id": "A", "depends_on": 7}]}, "depends_on"),
        ({"tasks": [{"id": "A", "priority": {"x": 1}}]}, "priority"),
        ({"tasks": [{"id": "A", "estimate": -5}]}, "estimate"),
        ({"tasks": [{"id": "A", "estimate": 1e12}]}, "estimate"),
        ({"tasks": [{"id": "A"}, {"id": "A"}]}, "duplicate task id"),
        ({"tasks": [{"title": "no id"}]}, "id"),
        ({"tasks": [{"id": "x" * 5000}]}, "characters long"),
        ({"tasks": [{"id": "A", "max_parallel": "lots"}], "max_parallel": "lots"}, "max_parallel"),
        ([1, 2, 3], ""), ("just a string", ""), (42, ""),
    ]
    for i in range(150):
        doc, expect = wrong[i % len(wrong)]
        body = json.dumps(doc).encode() if i % 2 else yaml.safe_dump(doc).encode()
        put(f"wrong-{i}.{'json' if i % 2 else 'yaml'}", body + f"\n# {i}".encode() * (i % 2 == 0),
            expect)
    for i in range(40):  # bad content under names that are not UTF-8 (Latin-1, stray bytes)
        raw = (b"latin1-\xe9t\xe9-%d.yaml" if i % 2 else b"stray-\xff\xfe\x80-%d.json") % i
        put(raw, json.dumps({"tasks": [{"id": f"A{i}", "estimate": "soon"}]}).encode(),
            "estimate")
    for i in range(100):  # ids of stray unicode and control characters
        doc = {"tasks": [{"id": f"bad\u0000id{i}" if i % 2 else "\u202e" * (300 + i)}]}
        put(f"strange-id-{i}.json", json.dumps(doc).encode(),
            "control characters" if i % 2 else "characters long")
    # what the watcher refuses before planning
    with open(folder / "huge.yaml", "wb") as fh:  # 100 MB (sparse)
        fh.truncate(100 * 1024 * 1024)
    bad["huge.yaml"] = "over the limit of"
    os.mkfifo(folder / "pipe.yaml")
    bad["pipe.yaml"] = "not a regular file"
    outside = folder.parent / "outside-secret.yaml"
    outside.write_text("tasks: [{id: SECRET}]")
    os.symlink(outside, folder / "link-out.yaml")
    bad["link-out.yaml"] = "outside the watch dir"
    (folder / "a-directory.yaml").mkdir()
    bad["a-directory.yaml"] = "is a directory"
    unreadable = folder / "no-read.yaml"
    unreadable.write_text("tasks: [{id: X}]")
    os.chmod(unreadable, 0)
    bad["no-read.yaml"] = "not readable"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "socket.yaml"))
    sock.close()
    bad["socket.yaml"] = "not a regular file"
    return good, bad
