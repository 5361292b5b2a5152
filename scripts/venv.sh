#!/usr/bin/env bash
# Create .venv (once) and install planfleet with the given extras into it, quietly: pip's
# output goes to .venv/pip.log and is shown only when the install fails.
# Usage: scripts/venv.sh EXTRAS   (e.g. "test,embedded")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embedded}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=".venv/.installed-${extras//,/_}"
log=.venv/pip.log
# up to date: an install with these extras (or more) newer than the dependency list
covered() {
    local s want have
    for s in .venv/.installed-*; do
        [ -f "$s" ] && [ ! pyproject.toml -nt "$s" ] || continue
        have="_${s#.venv/.installed-}_"
        for want in ${extras//,/ }; do
            [[ "$have" == *"_${want}_"* ]] || continue 2
        done
        return 0
    done
    return 1
}
if ! covered; then
    echo "installing planfleet[${extras}] into .venv (pip's output: $log)" >&2
    if ! { .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip &&
           .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"; } \
           >"$log" 2>&1; then
        cat "$log" >&2
        echo "scripts/venv.sh: pip install failed (above, and in $log)" >&2
        exit 1
    fi
    touch "$stamp"
fi
