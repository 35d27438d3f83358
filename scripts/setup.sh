#!/usr/bin/env bash
# Set-up for a fresh machine: a venv in .venv with the pinned requirements and this package (editable).
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha
# What the install depends on: the pinned requirements, the package definition, and the package folders
# (top-level folders with an __init__.py) that the editable install maps at install time, so a new one
# triggers a reinstall. Other folders (runs/, outputs, data) change nothing installed.
want=$( (sha256sum requirements.txt setup.py setup.cfg; ls -d */__init__.py) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install --disable-pip-version-check -q -r requirements.txt
  .venv/bin/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
