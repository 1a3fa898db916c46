#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu base image).
# It installs Python, bubblewrap (the local sandbox's isolation), the CPU build of PyTorch and the
# grading engine into a virtual environment at $GRADER_AUTOGRADER_ROOT/venv (/autograder/venv).
set -euo pipefail
ROOT="${GRADER_AUTOGRADER_ROOT:-/autograder}"
SOURCE="${GRADER_AUTOGRADER_SOURCE:-$ROOT/source}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends python3 python3-venv python3-pip bubblewrap ca-certificates
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install -q --upgrade pip
# The CPU wheel: Gradescope's machines have no GPU.
"$ROOT/venv/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu
cd "$SOURCE"
"$ROOT/venv/bin/pip" install -q -r requirements.txt
"$ROOT/venv/bin/python" -c "import grader; print('grader', grader.__version__, 'installed')"
