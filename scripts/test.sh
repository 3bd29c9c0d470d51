#!/usr/bin/env bash
# Set up (idempotent), then run lint, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check wms tms mqs_client pilot tests
.venv/bin/mypy wms tms mqs_client pilot
exec .venv/bin/python -m pytest "$@"
