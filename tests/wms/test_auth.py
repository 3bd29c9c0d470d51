"""The auth matrix: every route refuses missing/bad tokens (401) and wrong roles (403); owners only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from apiclient import AUDIENCE, Api
from factories import workflow_request

from wms.auth import AuthError, Role, TokenValidator, issue_token

SPEC = json.loads((Path(__file__).resolve().parents[2] / "Docs" / "openapi.json").read_text())
IDS = {
    "workflow_id": "WF-1-00000000",
    "task_id": "TK-1-00000000-00000000",
    "taskforce_uuid": "TF-1-00000000-00000000-00000000",
}
PROTECTED = [  # under the first of the path's servers (/v0; / for /metrics): /v1 serves the same handlers
    (method.upper(), item.get("servers", SPEC["servers"])[0]["url"].rstrip("/") + path, op.get("x-roles", []))
    for path, item in SPEC["paths"].items()
    for method, op in item.items()
    if method in {"get", "post", "patch"} and op.get("security", None) != []
]


def _concrete(path: str) -> str:
    for name, value in IDS.items():
        path = path.replace("{" + name + "}", value)
    return path


def _bad_tokens(auth_key: str) -> dict[str, str]:
    now = int(time.time())
    good = {"sub": "alice", "aud": AUDIENCE, "exp": now + 600, "ewms_role": "admin"}
    return {
        "malformed": "not-a-jwt",
        "expired": jwt.encode({**good, "exp": now - 10}, auth_key, algorithm="HS256"),
        "bad signature": jwt.encode(good, "another-key-of-sufficient-length-123456", algorithm="HS256"),
        "wrong audience": jwt.encode({**good, "aud": "someone-else"}, auth_key, algorithm="HS256"),
        "no subject": jwt.encode({k: v for k, v in good.items() if k != "sub"}, auth_key, algorithm="HS256"),
        "alg none": jwt.encode(good, None, algorithm="none"),
    }


@pytest.mark.parametrize(("method", "path", "roles"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
async def test_every_protected_route_refuses_bad_tokens_and_wrong_roles(
    wms_server,
    auth_key: str,
    make_token,
    method: str,
    path: str,
    roles: list[str],  # type: ignore[no-untyped-def]
) -> None:
    url = _concrete(path)
    params = {"schedd": "s"} if "pending-" in path else None
    await Api(wms_server.url, None).problem(method, url, status=401, params=params)
    for name, token in _bad_tokens(auth_key).items():
        problem = await Api(wms_server.url, token).problem(method, url, status=401, params=params)
        assert problem["detail"], name
    no_role = make_token("nobody", "mallory")
    await Api(wms_server.url, no_role).problem(method, url, status=403, params=params)
    for role in set(Role) - {Role(r) for r in roles}:
        await Api(wms_server.url, make_token(role, "mallory")).problem(method, url, status=403, params=params)


async def test_users_only_see_and_act_on_their_own_workflows(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request())
    wid = created["workflow"]["workflow_id"]
    tid = created["task_directives"][0]["task_id"]
    uuid = created["taskforces"][0]["taskforce_uuid"]
    bob = api_as(Role.USER, "bob")
    for path in (
        f"/v0/workflows/{wid}",
        f"/v0/task-directives/{tid}",
        f"/v0/taskforces/{uuid}",
        f"/v0/mqs/workflows/{wid}/mq-profiles/public",
    ):
        await bob.problem("GET", path, status=404)
    await bob.problem("POST", f"/v0/workflows/{wid}/actions/abort", status=404)
    await bob.problem(
        "POST",
        f"/v0/task-directives/{tid}/actions/add-workers",
        {"cluster_location": "test-alpha", "n_workers": 1},
        status=404,
    )
    for kind in ("workflows", "task-directives", "taskforces"):
        page = await bob.ok("POST", f"/v0/query/{kind}", {"query": {"workflow_id": wid}})
        assert page[kind.replace("-", "_")] == []
    admin = api_as(Role.ADMIN, "root")
    assert (await admin.ok("GET", f"/v0/workflows/{wid}"))["owner"] == "alice"
    assert (await admin.ok("POST", "/v0/query/workflows", {"query": {"workflow_id": wid}}))["workflows"]
    # the workflow is untouched by bob's attempts
    assert (await api.ok("GET", f"/v0/workflows/{wid}"))["deactivated"] is None


async def test_tms_tokens_cannot_call_user_actions(api: Api, api_as) -> None:  # type: ignore[no-untyped-def]
    created = await api.ok("POST", "/v0/workflows", workflow_request())
    tms = api_as(Role.TMS, "tms")
    await tms.problem("POST", "/v0/workflows", workflow_request(), status=403)
    await tms.problem("POST", f"/v0/workflows/{created['workflow']['workflow_id']}/actions/abort", status=403)
    await tms.problem("GET", f"/v0/workflows/{created['workflow']['workflow_id']}", status=403)
    user = api_as(Role.USER, "alice")
    await user.problem("GET", "/v0/tms/pending-starter/taskforces", status=403, params={"schedd": "x"})


async def test_health_is_public(wms_server) -> None:  # type: ignore[no-untyped-def]
    assert (await Api(wms_server.url, None).ok("GET", "/v0/"))["status"] == "ok"


def test_a_remembered_token_still_expires_and_others_are_checked_in_full() -> None:
    key = "k" * 32
    validator = TokenValidator(audience=AUDIENCE, signing_key=key)
    short = issue_token(key, "ivan", Role.USER, AUDIENCE, ttl=1)
    assert validator.authenticate(f"Bearer {short}").subject == "ivan"
    assert validator.authenticate(f"Bearer {short}").subject == "ivan"  # the remembered validation
    tampered = short[:-2] + ("AA" if not short.endswith("AA") else "BB")
    with pytest.raises(AuthError, match="invalid token"):
        validator.authenticate(f"Bearer {tampered}")
    time.sleep(1.1)
    with pytest.raises(AuthError, match="expired"):
        validator.authenticate(f"Bearer {short}")
