"""Schemathesis against Docs/openapi.json on a running WMS with a real (admin) token, every route.

Pass = no 5xx, no undocumented status code, every response (body, content type, headers) valid against the spec.
The long run (>= 5,000 cases) is `bash scripts/fuzz.sh` (see README)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from wms.auth import Role

SPEC = Path(__file__).resolve().parents[2] / "Docs" / "openapi.json"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


def run_schemathesis(url: str, token: str, max_examples: int, seed: int) -> subprocess.CompletedProcess[str]:
    """One schemathesis run over every operation (examples, coverage, fuzzing and stateful phases).

    The document is read from the server (the same file) under ``/v1`` (an operation whose URL is the schema's
    location is not tested: that one is ``/v0/schema/openapi``), so that its relative ``servers`` (``/v0``; ``/`` for
    ``/metrics``) resolve against the server's address."""
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/v1/schema/openapi"]
    cmd += ["-H", f"Authorization: Bearer {token}", "-n", str(max_examples), "--seed", str(seed), "--checks", CHECKS]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


def test_quick_fuzz_finds_no_server_error_or_spec_violation(wms_process: str, make_token) -> None:  # type: ignore[no-untyped-def]
    result = run_schemathesis(wms_process, make_token(Role.ADMIN, "fuzzer"), max_examples=12, seed=20261123)
    assert result.returncode == 0, result.stdout[-6000:]
    generated = int(re.search(r"(\d+) generated", result.stdout).group(1))  # type: ignore[union-attr]
    assert generated >= 200, result.stdout[-2000:]
    spec = json.loads(SPEC.read_text())
    n_operations = sum(1 for item in spec["paths"].values() for method in item if method in {"get", "post", "patch"})
    assert f"Tested: {n_operations}" in result.stdout, result.stdout[-3000:]
