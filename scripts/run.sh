#!/usr/bin/env bash
# Installs Smear Workbench into .venv and opens it on the bundled sample with the shipped weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/workbench analyze datasets/sample/images --out results/sample "$@"
