"""A hostile tenant probes for what it may not see or do: other users' objects (answered exactly as if missing),
tokens from the wrong issuer, the metrics route, and query parameters (coerced to their schema types)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from apiclient import AUDIENCE, Api
from cryptography.hazmat.primitives.asymmetric import rsa
from factories import workflow_request

from wms.auth import Role, issue_token

SPEC = json.loads((Path(__file__).resolve().parents[2] / "Docs" / "openapi.json").read_text())
MISSING = {
    "workflow_id": "WF-1-00000000",
    "task_id": "TK-1-00000000-00000000",
    "taskforce_uuid": "TF-1-00000000-00000000-00000000",
}
ADD_WORKERS = {"cluster_location": "test-alpha", "n_workers": 1}

# every owner-checked route a user can call, with the body it needs
OWNED_ROUTES = [
    ("GET", "/v0/workflows/{workflow_id}", None),
    ("PATCH", "/v0/workflows/{workflow_id}", {"labels": {"x": "y"}}),
    ("POST", "/v0/workflows/{workflow_id}/actions/abort", None),
    ("POST", "/v0/workflows/{workflow_id}/actions/finished", None),
    ("GET", "/v0/mqs/workflows/{workflow_id}/mq-profiles/public", None),
    ("GET", "/v0/task-directives/{task_id}", None),
    ("POST", "/v0/task-directives/{task_id}/actions/add-workers", ADD_WORKERS),
    ("GET", "/v0/taskforces/{taskforce_uuid}", None),
    ("POST", "/v0/taskforces/{taskforce_uuid}/actions/retry", None),
    ("GET", "/v0/taskforces/{taskforce_uuid}/logs", None),
]


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path)


@pytest.mark.parametrize(("method", "path", "body"), OWNED_ROUTES, ids=[f"{m} {p}" for m, p, _ in OWNED_ROUTES])
async def test_another_users_object_answers_exactly_as_a_missing_one(
    api: Api,
    api_as,
    method: str,
    path: str,
    body: Any,  # type: ignore[no-untyped-def]
) -> None:
    created = await api.ok("POST", "/v0/workflows", workflow_request())
    ids = {
        "workflow_id": created["workflow"]["workflow_id"],
        "task_id": created["task_directives"][0]["task_id"],
        "taskforce_uuid": created["taskforces"][0]["taskforce_uuid"],
    }
    for intruder in ("bob", "alice-2", "ALICE"):
        mallory = api_as(Role.USER, intruder)
        foreign = await mallory.problem(method, _fill(path, ids), body, status=404)
        missing = await mallory.problem(method, _fill(path, MISSING), body, status=404)
        for name in ids:
            foreign["detail"] = foreign["detail"].replace(ids[name], MISSING[name])
            foreign["instance"] = foreign["instance"].replace(ids[name], MISSING[name])
        assert {k: v for k, v in foreign.items() if k != "error"} == {k: v for k, v in missing.items() if k != "error"}
    workflow = await api.ok("GET", f"/v0/workflows/{ids['workflow_id']}")
    assert workflow["deactivated"] is None and "x" not in workflow.get("labels", {})
    assert (
        len(
            (await api.ok("POST", "/v0/query/taskforces", {"query": {"workflow_id": ids["workflow_id"]}}))["taskforces"]
        )
        == 1
    )


# ---------------------------------------------------------------------------------------------- token issuer


class _Provider:
    """A real OpenID provider's public side: discovery document and JWKS, served over HTTP from a thread."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwks = json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                documents = {"/.well-known/openid-configuration": json.dumps(provider.discovery(base)).encode()}
                data = documents.get(self.path, jwks if self.path == "/jwks" else None)
                self.send_response(200 if data else 404)
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.url
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def discovery(self, base: str) -> dict[str, str]:
        return {"issuer": self.issuer, "jwks_uri": f"{base}/jwks"}

    def token(self, **claims: Any) -> str:
        base = {"sub": "alice", "aud": AUDIENCE, "exp": 4102444800, "ewms_role": "user", **claims}
        return jwt.encode({k: v for k, v in base.items() if v is not None}, self.key, "RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def provider() -> Iterator[_Provider]:
    served = _Provider()
    yield served
    served.server.shutdown()


async def test_openid_tokens_must_come_from_the_providers_issuer(start_wms, provider: _Provider) -> None:  # type: ignore[no-untyped-def]
    wms = await start_wms(AUTH_SIGNING_KEY="", AUTH_OPENID_URL=provider.url)
    await Api(wms.url, provider.token(iss=provider.issuer)).ok("POST", "/v0/query/workflows", {"query": {}})
    for name, iss in {
        "no issuer": None,
        "other issuer": "https://evil.example",
        "lookalike": provider.issuer + "/",
    }.items():
        problem = await Api(wms.url, provider.token(iss=iss)).problem(
            "POST", "/v0/query/workflows", {"query": {}}, status=401
        )
        assert "iss" in problem["detail"], name


async def test_a_configured_issuer_is_required_of_signed_tokens(start_wms, auth_key: str) -> None:  # type: ignore[no-untyped-def]
    wms = await start_wms(AUTH_ISSUER="https://tokens.example")
    good = issue_token(auth_key, "alice", Role.USER, AUDIENCE, iss="https://tokens.example")
    await Api(wms.url, good).ok("POST", "/v0/query/workflows", {"query": {}})
    for iss in (None, "https://evil.example", "https://tokens.example.evil", ""):
        extra = {} if iss is None else {"iss": iss}
        token = issue_token(auth_key, "alice", Role.USER, AUDIENCE, **extra)
        await Api(wms.url, token).problem("POST", "/v0/query/workflows", {"query": {}}, status=401)


# ---------------------------------------------------------------------------------------------- /metrics


async def test_metrics_need_the_metrics_credential_or_an_admin(start_wms, make_token) -> None:  # type: ignore[no-untyped-def]
    wms = await start_wms(METRICS_TOKEN="scrape-secret-0123456789")
    refused = {None: 401, "not-a-jwt": 401, "scrape-secret": 401, "scrape-secret-0123456789x": 401}
    refused |= {make_token(Role.USER, "alice"): 403, make_token(Role.TMS, "tms"): 403}
    for token, status in refused.items():
        await Api(wms.url, token).problem("GET", "/metrics", status=status)
    async with httpx.AsyncClient() as client:
        response = await client.get(wms.url + "/metrics", headers={"Authorization": "Bearer ünïcode".encode()})
    assert response.status_code == 401
    for token in ("scrape-secret-0123456789", make_token(Role.ADMIN, "root")):
        response = await Api(wms.url, token).call("GET", "/metrics")
        assert response.status_code == 200 and "ewms_wms_workflows" in response.text


def _active_workflows(text: str) -> float:
    match = re.search(r'^ewms_wms_workflows\{state="active"\} (\S+)$', text, re.M)
    assert match, text
    return float(match.group(1))


@pytest.mark.parametrize(("refresh", "fresh"), [("3600", False), ("0", True)])
async def test_metrics_serve_cached_counts(start_wms, make_token, refresh: str, fresh: bool) -> None:  # type: ignore[no-untyped-def]
    wms = await start_wms(METRICS_REFRESH_SECONDS=refresh)
    scraper = Api(wms.url, make_token(Role.ADMIN, "prometheus"))
    first = _active_workflows((await scraper.call("GET", "/metrics")).text)
    await Api(wms.url, make_token(Role.USER, "alice")).ok("POST", "/v0/workflows", workflow_request())
    for _ in range(5):
        again = _active_workflows((await scraper.call("GET", "/metrics")).text)
    assert again == (first + 1 if fresh else first)


# ---------------------------------------------------------------------------------------------- query parameters


def _typed_query_parameters() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                schema = param.get("schema", {})
                if param.get("in") == "query" and schema.get("type") in ("integer", "number", "boolean"):
                    found.append((method.upper(), "/v0" + path, param))  # paths are relative to the servers
    return found


TYPED = _typed_query_parameters()


def test_the_document_has_typed_query_parameters() -> None:
    assert ("GET", "/v0/admin/archive/workflows") in {(m, p) for m, p, _ in TYPED}


@pytest.mark.parametrize(("method", "path", "param"), TYPED, ids=[f"{m} {p} {q['name']}" for m, p, q in TYPED])
async def test_query_parameters_are_read_as_their_schema_types(
    api_as,
    method: str,
    path: str,
    param: dict[str, Any],  # type: ignore[no-untyped-def]
) -> None:
    admin = api_as(Role.ADMIN, "root")
    schema, name = param["schema"], param["name"]
    good = {"integer": [schema.get("minimum", 1), schema.get("maximum", 5)], "number": [0.5], "boolean": ["true"]}
    bad = {"integer": ["abc", "1.5", "", str(schema.get("minimum", 1) - 1)], "number": ["x"], "boolean": ["yes"]}
    url = _fill(path, MISSING)
    for value in good[schema["type"]]:
        response = await admin.call(method, url, params={name: str(value).lower()})
        assert response.status_code in (200, 404), (value, response.text)
    for value in bad[schema["type"]]:
        if value == str(schema.get("minimum", 1) - 1) and "minimum" not in schema:
            continue
        await admin.problem(method, url, params={name: value}, status=400)


async def test_archive_page_size_limits_the_page(api_as) -> None:  # type: ignore[no-untyped-def]
    page = await api_as(Role.ADMIN, "root").ok("GET", "/v0/admin/archive/workflows", params={"limit": "5"})
    assert page == {"workflows": [], "next_after": None}
    async with httpx.AsyncClient() as client:
        assert (await client.get(api_as(None).base_url + "/v0/admin/archive/workflows?limit=5")).status_code == 401
