"""A thousand malformed files dropped with fifty valid ones: every valid file is built, every
bad one ends failed with a specific message, no process dies, memory stays bounded."""

from __future__ import annotations

import collections
import time
from pathlib import Path

import pytest

from planfleet import models
from tests.conftest import wait_for
from tests.integration.conftest import BIN, Fleet
from tests.support.corpus import write_corpus


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_bad_input_corpus(fleet: Fleet) -> None:
    inbox = Path(fleet.env["WATCH_DIR"])
    staging = fleet.tmp / "staging"
    good, bad = write_corpus(staging, str(fleet.records))
    assert len(bad) >= 1000 and len(good) == 50
    fleet.worker("plan_queue")
    fleet.worker("plan_queue")
    fleet.worker("build_queue")
    fleet.worker("build_queue")
    watcher = fleet.start(str(BIN / "planfleet"), "watch", name="watch")
    wait_for(inbox.exists, timeout=20)
    inbox.rmdir()
    staging.rename(inbox)  # every file appears at once

    names = set(good) | set(bad)

    seen: list[tuple[float, int]] = []

    def settled() -> bool:
        """Every recorded input is planned or failed, and the watcher found nothing new for
        5 s (identical files are recorded once, so there are fewer inputs than names)."""
        rows = fleet.store.inputs.list(limit=5000)
        counts = collections.Counter(r.status.value for r in rows)
        now = time.monotonic()
        if not seen or seen[-1][1] != len(rows):
            seen.append((now, len(rows)))
            print(f"{len(rows)} inputs: {dict(counts)}", flush=True)
        busy = counts["queued"] + counts["planning"] + counts["pending"]
        return busy == 0 and len(rows) > 0 and now - seen[-1][0] > 5

    wait_for(settled, timeout=300, interval=1.0)
    rows = {r.filename: r for r in fleet.store.inputs.list(limit=5000)}
    # the duplicates: identical bad files are recorded once (digest), the other names noted
    missing = names - set(rows)
    events = fleet.store.events.list(kind="input_duplicate", limit=5000)
    duplicate_names = {e.data.get("filename") for e in events}
    assert missing <= duplicate_names, sorted(missing - duplicate_names)[:10]
    problems: list[str] = []
    for name, expect in bad.items():
        r = rows.get(name)
        if r is None:
            continue
        if r.status is not models.InputStatus.FAILED:
            problems.append(f"{name}: {r.status}")
        elif not r.error or expect.lower() not in r.error.lower():
            problems.append(f"{name}: error {r.error!r} lacks {expect!r}")
    assert not problems, problems[:20]
    # every valid file is built
    plans = {p.pending_input_id: p for p in fleet.store.plans.list(limit=5000)}

    def built() -> bool:
        ps = {p.pending_input_id: p for p in fleet.store.plans.list(limit=5000)}
        return all(ps.get(rows[n].id) and ps[rows[n].id].status is models.PlanStatus.BUILT
                   for n in good)

    wait_for(built, timeout=200, interval=1.0)
    plans = {p.pending_input_id: p for p in fleet.store.plans.list(limit=5000)}
    assert len(plans) == len(good)
    # nothing died, nothing grew without bound
    assert all(p.poll() is None for p in fleet.procs), fleet.logs()[-3000:]
    sizes = {p.args[1] if p.args[1] != "worker" else p.args[2]: rss_mb(p.pid)
             for p in fleet.procs}
    assert all(mb < 600 for mb in sizes.values()), sizes
    counts = collections.Counter(r.status for r in rows.values())
    print(f"corpus: {len(bad)} bad, {len(good)} valid; inputs {dict(counts)}; "
          f"RSS MB {sizes}; watcher alive: {watcher.poll() is None}")
