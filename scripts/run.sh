#!/usr/bin/env bash
# Installs Smear Workbench into .venv and opens the desktop workbench on the bundled sample with the shipped weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/workbench gui datasets/sample/images "$@"
