"""Schemathesis against Docs/openapi.json on a running WMS with real tokens, every route: as an admin, and as two
ordinary users aimed at one user's objects (every generated path id replaced by alice's; see fuzz_ownership_hooks).

Pass = no 5xx, no undocumented status code, every response (body, content type, headers) valid against the spec,
and (ownership runs) no 2xx answer to bob that shows alice's objects. The long run (>= 5,000 cases) is
`bash scripts/fuzz.sh` (see README)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from factories import workflow_request

from wms.auth import Role

pytestmark = pytest.mark.long_file

SPEC = Path(__file__).resolve().parents[2] / "Docs" / "openapi.json"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


HOOKS = Path(__file__).resolve().parent / "fuzz_ownership_hooks.py"


def run_schemathesis(
    url: str, token: str, max_examples: int, seed: int, aimed: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    """One schemathesis run over every operation (examples, coverage, fuzzing and stateful phases); with ``aimed``
    (a user's ids and name, and whether the caller is forbidden to see them), aimed at that user's objects.

    The document is read from the server (the same file) under ``/v1`` (an operation whose URL is the schema's
    location is not tested: that one is ``/v0/schema/openapi``), so that its relative ``servers`` (``/v0``; ``/`` for
    ``/metrics``) resolve against the server's address."""
    cmd = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{url}/v1/schema/openapi"]
    checks = CHECKS + (",never_another_users_object" if aimed and aimed["forbidden"] else "")
    cmd += ["-H", f"Authorization: Bearer {token}", "-n", str(max_examples), "--seed", str(seed), "--checks", checks]
    env = dict(os.environ)
    if aimed:
        env |= {
            "SCHEMATHESIS_HOOKS": HOOKS.stem,
            "PYTHONPATH": os.pathsep.join([str(HOOKS.parent), env.get("PYTHONPATH", "")]),
            "FUZZ_AIMED": json.dumps(aimed),
        }
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)


def test_quick_fuzz_finds_no_server_error_or_spec_violation(wms_process: str, make_token) -> None:  # type: ignore[no-untyped-def]
    result = run_schemathesis(wms_process, make_token(Role.ADMIN, "fuzzer"), max_examples=12, seed=20261123)
    assert result.returncode == 0, result.stdout[-6000:]
    generated = int(re.search(r"(\d+) generated", result.stdout).group(1))  # type: ignore[union-attr]
    assert generated >= 200, result.stdout[-2000:]
    spec = json.loads(SPEC.read_text())
    n_operations = sum(1 for item in spec["paths"].values() for method in item if method in {"get", "post", "patch"})
    assert f"Tested: {n_operations}" in result.stdout, result.stdout[-3000:]


@pytest.mark.parametrize("fuzzer", ["bob", "alice"])
def test_fuzzing_as_users_aimed_at_alices_objects(wms_process: str, make_token, fuzzer: str) -> None:  # type: ignore[no-untyped-def]
    """bob must never get a 2xx showing alice's objects; alice, fuzzing her own, must stay within the document."""
    headers = {"Authorization": f"Bearer {make_token(Role.USER, 'alice')}"}
    created = httpx.post(f"{wms_process}/v0/workflows", json=workflow_request(), headers=headers, timeout=30).json()
    ids = {
        "workflow_id": created["workflow"]["workflow_id"],
        "task_id": created["task_directives"][0]["task_id"],
        "taskforce_uuid": created["taskforces"][0]["taskforce_uuid"],
    }
    aimed = {"ids": ids, "owner": "alice", "forbidden": fuzzer != "alice"}
    result = run_schemathesis(wms_process, make_token(Role.USER, fuzzer), max_examples=6, seed=20261202, aimed=aimed)
    assert result.returncode == 0, result.stdout[-6000:]
