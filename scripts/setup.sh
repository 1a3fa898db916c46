#!/usr/bin/env bash
# Everything a fresh Debian/Ubuntu machine needs: bubblewrap for the sandbox (when we may install
# it), a virtual environment with the CPU build of torch pinned, and the grader with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# Debian packages: bubblewrap (the local sandbox's isolation); docker.io and debootstrap (the
# docker sandbox's engine and its offline CPU image, used by the tests marked `docker`); chromium
# and fonts-noto-cjk (the report's browser test).
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
# chromium and Korean fonts: the browser test of the feedback report
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
fc-list :lang=ko 2>/dev/null | grep -q . || missing="$missing fonts-noto-cjk"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; }
  else
    echo "setup: not installed and cannot be installed here:$missing (the local sandbox then runs without isolation; docker tests skip)" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The CPU wheel (the project itself accepts a range, for GPU runners with CUDA builds).
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# An editable install is not byte-compiled by pip, and PYTHONDONTWRITEBYTECODE (set on some
# machines) stops Python doing it on import: compile once here, not on every `grade`.
.venv/bin/python -m compileall -q grader >/dev/null
touch .venv/.installed
