"""Chaos run (see tests/support/chaos.py): 300 task files dropped over a minute into the real
fleet while a random process is SIGKILLed and restarted every 2 s, Redis is restarted empty
once and Postgres restarted once (down for 30 s). Prints the report's counts.

    .venv/bin/python bench/chaos.py [--inputs 300] [--drop-over 60] [--kill-every 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.chaos import Chaos  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inputs", type=int, default=300)
    ap.add_argument("--drop-over", type=float, default=60.0)
    ap.add_argument("--kill-every", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pg-down", type=float, default=30.0,
                    help="seconds Postgres stays down when it is restarted")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="planfleet-chaos-"))
    chaos = Chaos(work, inputs=args.inputs, drop_over=args.drop_over,
                  kill_every=args.kill_every, seed=args.seed, pg_down=args.pg_down)
    try:
        report = chaos.run(settle_timeout=600)
    finally:
        chaos.stop_all()
    for line in report.lines():
        print(line)
    print(f"logs in {work}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
