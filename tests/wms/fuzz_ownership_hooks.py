"""Schemathesis hooks for fuzzing ownership (loaded through ``SCHEMATHESIS_HOOKS`` by tests/wms/test_fuzz.py).

``FUZZ_AIMED`` holds a user's object ids and name: every generated path id is replaced by that user's; when the
caller is ``forbidden`` to see them, no successful response may carry one of those ids or that owner.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis

AIMED: dict[str, Any] = json.loads(os.environ.get("FUZZ_AIMED", '{"ids": {}, "owner": null, "forbidden": false}'))


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    """Aim every request that names an object at the user's object."""
    for name, value in AIMED["ids"].items():
        if case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = value


@schemathesis.check
def never_another_users_object(ctx: Any, response: Any, case: Any) -> None:
    """A 2xx answer to a forbidden caller never shows or acts on the user's objects."""
    if not AIMED["forbidden"] or response.status_code >= 300:
        return
    text = (response.text or "").replace('":"', '": "')
    leaked = [value for value in AIMED["ids"].values() if value in text]
    if f'"owner": "{AIMED["owner"]}"' in text:
        leaked.append(f"owner {AIMED['owner']}")
    if leaked:
        raise AssertionError(f"{case.method} {case.formatted_path} answered {response.status_code} with {leaked}")
