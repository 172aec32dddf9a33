#!/usr/bin/env bash
# Run part of `make test` with LMCOURSE_OFFLINE=1 inside a network namespace that has no network
# at all (only a down loopback), to prove a filled data cache is all the course needs.
#
#   tools/offline_check.sh                          # the unit tests (tests/)
#   tools/offline_check.sh tests/test_vader.py      # any pytest arguments
#   tools/offline_check.sh --nbval-lax notebooks/01_large_models.ipynb
#
# First it verifies the cache (`python -m lmcourse.data verify`, outside the namespace). Needs
# `unshare -n` (root) or `unshare -rn` (unprivileged user namespaces); where neither is permitted
# it prints SKIP and exits 0 (set OFFLINE_CHECK_STRICT=1 to exit 77 instead).
# Exit codes: pytest's (0 passed), 1 when the cache fails verification, 0/77 on SKIP.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ $# -gt 0 ] || set -- tests

skip() {
  echo "SKIP offline check: $1" >&2
  [ "${OFFLINE_CHECK_STRICT:-0}" = 1 ] && exit 77
  exit 0
}

command -v unshare >/dev/null || skip "unshare (util-linux) is not installed"
if unshare -n true 2>/dev/null; then
  NS=(unshare -n)
elif unshare -rn true 2>/dev/null; then
  NS=(unshare -rn)
else
  skip "this machine does not permit a network namespace (unshare -n needs root or user namespaces)"
fi

echo "== verifying the data cache" >&2
"$PY" -m lmcourse.data verify >&2 || { echo "the cache is incomplete: run \`make data\` online, or unpack an archive" >&2; exit 1; }

echo "== ${NS[*]}: LMCOURSE_OFFLINE=1 $PY -m pytest $*" >&2
# The loopback is brought up (Jupyter kernels talk to nbclient over 127.0.0.1); nothing else exists.
exec "${NS[@]}" env LMCOURSE_OFFLINE=1 PY="$PY" bash -c '
  ip link set lo up 2>/dev/null || true
  if "$PY" -c "import socket; socket.create_connection((\"1.1.1.1\", 53), timeout=3)" 2>/dev/null; then
    echo "the namespace still reaches the network; refusing to call this an offline check" >&2; exit 1
  fi
  echo "   (no network in here: a connection to 1.1.1.1 fails)" >&2
  exec "$PY" -m pytest -q -p no:cacheprovider "$@"' offline-check "$@"
