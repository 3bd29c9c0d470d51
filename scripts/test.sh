#!/usr/bin/env bash
# Set up (idempotent), then run lint, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check wms tms mqs_client pilot ewms_settings ewms_wire ewms_dev ewms_client tests bench Docs
.venv/bin/mypy wms tms mqs_client pilot ewms_settings ewms_wire ewms_dev ewms_client
# a private temp base: concurrent pytest sessions on one machine otherwise prune each other's temp dirs
BASETEMP="$(mktemp -d /tmp/ewms-pytest.XXXXXX)"
trap 'rm -rf "$BASETEMP"' EXIT
# three workers, one test file each at a time (module fixtures such as a dev stack stay in one process): most tests
# wait on brokers, databases and child processes, so three share the 2 cores well; `-n 0` runs in one process
.venv/bin/python -m pytest --basetemp "$BASETEMP" -n 3 --dist loadfile "$@"
