#!/usr/bin/env bash
# One command: set up, then run the whole test suite network-safe (loopback only).
# As root with unshare available, the tests run in a private network namespace that has only `lo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/ros_env.sh
run=(.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@")
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
  echo "running the tests in a private network namespace (loopback only)"
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${run[@]}"
fi
exec "${run[@]}"
