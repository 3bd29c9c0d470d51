#!/usr/bin/env bash
# Set up, start the whole stack on embedded defaults (database, broker, WMS, local TMS), run a real two-task
# workflow over real events, check every result, then stop the stack. Extra arguments go to the example script.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA_DIR="${EWMS_DEV_DIR:-.ewms-dev}"
.venv/bin/ewms dev up --data-dir "$DATA_DIR" --detach
trap '.venv/bin/ewms dev down --data-dir "$DATA_DIR"' EXIT
.venv/bin/python examples/request_workflow.py examples/workflow-chain.yaml --dev-data-dir "$DATA_DIR" "$@"
