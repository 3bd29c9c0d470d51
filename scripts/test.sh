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
.venv/bin/python -m pytest --basetemp "$BASETEMP" "$@"
