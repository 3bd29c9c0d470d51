#!/usr/bin/env bash
# Long fuzz run: schemathesis against Docs/openapi.json (as served) on a dev stack, every route, with an admin token.
# FUZZ_EXAMPLES (default 250 per operation: > 5,000 cases over 22 operations). Fails on any 5xx, undocumented
# status code, or response that does not match the document.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA_DIR="$(mktemp -d /tmp/ewms-fuzz.XXXXXX)"
.venv/bin/ewms dev up --data-dir "$DATA_DIR" --detach >/dev/null
trap '.venv/bin/ewms dev down --data-dir "$DATA_DIR" >/dev/null; rm -rf "$DATA_DIR"' EXIT
URL="$(.venv/bin/python -c "import json; print('http://127.0.0.1:%d' % json.load(open('$DATA_DIR/stack.json'))['wms_port'])")"
TOKEN="$(.venv/bin/python -c "
import json
from wms.auth import Role, issue_token
from ewms_dev.devstack import AUDIENCE
print(issue_token(json.load(open('$DATA_DIR/keys.json'))['auth_key'], 'fuzzer', Role.ADMIN, AUDIENCE))")"
# the document as served (it is Docs/openapi.json), from /v1 so that /v0/schema/openapi is tested too: its relative
# servers (/v0; / for /metrics) resolve against $URL
.venv/bin/schemathesis run "$URL/v1/schema/openapi" -H "Authorization: Bearer $TOKEN" \
    -n "${FUZZ_EXAMPLES:-250}" --checks \
    not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
