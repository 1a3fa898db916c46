#!/usr/bin/env bash
# Everything a fresh Debian/Ubuntu machine needs: bubblewrap for the sandbox (when we may install
# it), a virtual environment with the CPU build of torch pinned, and the grader with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }
  else
    echo "setup: bubblewrap is not installed and cannot be installed here; the local sandbox will run without isolation" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The CPU wheel (the project itself accepts a range, for GPU runners with CUDA builds).
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
touch .venv/.installed
