#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs the project into it. Used by run.sh and test.sh; safe to re-run.
# Usage: setup_venv.sh [EXTRA]   (EXTRA: an optional-dependencies group of pyproject.toml, e.g. test)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
# torch/torchvision first, pinned to the releases this machine class keeps on disk (no multi-GB download).
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
# ".[]" is not a valid requirement: name the extra only when one is asked for.
target="."
if [ -n "${1:-}" ]; then
    target=".[$1]"
fi
.venv/bin/python -m pip install --quiet -e "$target"
