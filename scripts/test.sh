#!/usr/bin/env bash
# The test command: venv + packages, services, then pytest on a throw-away database.
# Extra arguments go to pytest (e.g. scripts/test.sh -k watcher).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh test,embedded || exit 1
scripts/services.sh || exit 1
# the browser tests drive Debian's Chromium (never a downloaded browser)
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing chromium for the browser tests"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; } ||
        echo "could not install chromium: the browser tests will say so" >&2
fi
export PLANFLEET_TEST_DATABASE_URL="${PLANFLEET_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
export PLANFLEET_TEST_REDIS_URL="${PLANFLEET_TEST_REDIS_URL:-redis://127.0.0.1:6379/13}"
# the Windmill assets shipped in the package must stay consistent (main vs .script.yaml, flows, schedules)
.venv/bin/planfleet windmill validate planfleet/windmill || exit 1
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    # pytest found no test: fine for a filtered run, a broken suite otherwise
    if [ "$#" -gt 0 ]; then echo "no test matched: $*"; exit 0; fi
    echo "pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
