"""A longer fuzzing of the REST API than the suite's: random seeds, many examples per
operation (the suite runs 25 with a fixed seed). A failure prints the seed that reproduces it:
put it in tests/support/api_fuzz.py's SEED (or a test of its own) once fixed.

    .venv/bin/python bench/api_fuzz.py [--examples 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

import _common  # noqa: E402

from planfleet.config import Config  # noqa: E402
from planfleet.runtime import open_runtime  # noqa: E402
from tests.support import api_fuzz  # noqa: E402

TOKEN = "bench-fuzz-token"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300, help="examples per operation")
    parser.add_argument("--rounds", type=int, default=3, help="seeds to try")
    args = parser.parse_args()
    for n in range(args.rounds):
        seed = random.getrandbits(128)
        with _common.scratch_database("planfleet_bench_fuzz") as db, \
                _common.scratch_redis() as redis_url:
            rt = open_runtime(Config(database_url=db, redis_url=redis_url, api_token=TOKEN))
            try:
                api_fuzz.seed_runtime(rt)
                started = time.monotonic()
                try:
                    ops = api_fuzz.fuzz(rt, TOKEN, examples=args.examples, seed=seed)
                except Exception:
                    print(f"round {n + 1}: FAILED with seed {seed}", flush=True)
                    raise
                print(f"round {n + 1}: seed {seed}: {ops} operations x {args.examples} "
                      f"examples passed in {time.monotonic() - started:.0f} s", flush=True)
            finally:
                rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
