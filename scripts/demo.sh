#!/usr/bin/env bash
# The README's main command: set up, then the full demo (CamVid sample frames -> bag -> segmentation
# node -> recorded outputs -> report and pictures in one folder, whose path is printed at the end).
# Arguments go to `python -m tqdm_ros.demo` (e.g. --scale 0.5, --checkpoint model.pt), which runs in the
# folder this script was called from, so paths given (-o, --checkpoint) are relative to that folder.
# Network-safe: scripts/ros_env.sh, and as root with unshare a private network namespace with only `lo`.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
repo=$PWD
bash scripts/setup.sh
source scripts/ros_env.sh
cd "$caller"
run=("$repo/.venv/bin/python" -m tqdm_ros.demo "$@")
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
  echo "running the demo in a private network namespace (loopback only)"
  exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "${run[@]}"
fi
exec "${run[@]}"
