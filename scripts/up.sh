#!/usr/bin/env bash
# The fleet on this machine: venv + packages, then `planfleet up` (embedded Postgres and Redis
# unless DATABASE_URL / REDIS_URL are set). Extra arguments go to `planfleet up`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh embedded
if [ -t 0 ]; then
    # On a terminal, run `up` as a job of its own in the foreground: Ctrl-C then reaches it
    # (and honcho) only, not make, which would otherwise die of the signal itself and report
    # 130 after a clean stop. `up` exits 0 once everything it started has stopped.
    set -m
fi
rc=0
.venv/bin/planfleet up "$@" || rc=$?
exit "$rc"
