#!/usr/bin/env bash
# Installs Smear Workbench with its test extras into .venv and runs the whole test suite (offscreen Qt).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh test
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "$@"
