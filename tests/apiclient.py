"""A test HTTP client for the WMS that checks every response against Docs/openapi.json with openapi-core."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from openapi_core import Config, OpenAPI
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.testing import MockRequest, MockResponse

AUDIENCE = "ewms-test"  # the audience of tokens the WMS under test accepts
SPEC_PATH = Path(__file__).resolve().parent.parent / "Docs" / "openapi.json"
_OPENAPI: OpenAPI | None = None


def openapi() -> OpenAPI:
    """The document, loaded once, accepting problem+json bodies."""
    global _OPENAPI
    if _OPENAPI is None:
        config = Config(extra_media_type_deserializers={"application/problem+json": json_loads})
        _OPENAPI = OpenAPI.from_dict(json.loads(SPEC_PATH.read_text()), config=config)
    return _OPENAPI


def check_response(response: httpx.Response) -> None:
    """Raise if the response (status, headers, body) is not what the document promises for its request."""
    request = response.request
    url = request.url
    content_type = response.headers.get("content-type", "application/json").split(";")[0]
    mock_request = MockRequest(
        host_url=f"{url.scheme}://{url.netloc.decode()}",
        method=request.method.lower(),
        path=url.path,
        args=dict(url.params),
        headers=dict(request.headers),
        data=request.content or None,
    )
    mock_response = MockResponse(
        response.content, status_code=response.status_code, headers=dict(response.headers), content_type=content_type
    )
    openapi().validate_response(mock_request, mock_response)


@dataclass
class Api:
    """Calls the WMS with a token; every response is checked against the OpenAPI document."""

    base_url: str
    token: str | None
    client: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=30))
    validate: bool = True

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """Send one request and return the (validated) response."""
        headers = dict(kwargs.pop("headers", {}))
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        if body is not None:
            kwargs["json"] = body
        response = await self.client.request(method, self.base_url + path, headers=headers, **kwargs)
        if self.validate:
            check_response(response)
        return response

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200, **kwargs: Any) -> Any:
        """Send one request that must succeed with ``status``; its JSON body."""
        response = await self.call(method, path, body, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        return response.json()

    async def problem(self, method: str, path: str, body: Any = None, status: int = 400, **kwargs: Any) -> Any:
        """Send one request that must fail with ``status`` and a problem-details body; that body."""
        response = await self.call(method, path, body, **kwargs)
        assert response.status_code == status, (response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), response.headers
        problem = response.json()
        assert problem["status"] == status and problem["detail"], problem
        return problem
