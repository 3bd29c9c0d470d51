"""What the TMS adds to a pilot's environment for events to be accounted for and pilots to outlive their tokens:
the workflow's failed-events queue, the token renewal route with the pilot credential, and wait defaults.

One function, called where the env file is written (``tms.submit_description.build_job_spec``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from ewms_wire.failed_events import FAILED_EVENTS_ALIAS
from tms.config import TMSConfig

FIRST_MESSAGE = "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE"
INCOMING = "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING"


def token_refresh_url(config: TMSConfig, workflow_id: str) -> str:
    """The WMS route a pilot renews its tokens at; the pilot replaces ``{queue}``."""
    base = config.pilot_wms_address or config.ewms_address
    return f"{base}/v0/mqs/workflows/{quote(workflow_id, safe='')}/queues/{{queue}}/token"


def pilot_env_extras(
    config: TMSConfig,
    taskforce: Mapping[str, Any],
    mqprofiles: Sequence[Mapping[str, Any]],
    pilot_credential: str | None,
    env: Mapping[str, str],
) -> dict[str, str]:
    """The variables to add to ``env`` (the pilot's environment so far, user's and operator's settings included):

    - ``EWMS_PILOT_QUEUE_FAILED`` (+ ``_AUTH_TOKEN``, ``_BROKER_TYPE``, ``_BROKER_ADDRESS``) from the active
      ``@failed-events`` profile, so that a failed task's event goes there with its error instead of being requeued;
    - ``EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL`` and ``..._CREDENTIAL`` when the WMS handed a pilot credential;
    - the wait defaults (``TMS_PILOT_DEFAULT_*``), only where ``env`` sets none, so that events sent a while after
      the queues were activated still find a pilot.
    """
    extras: dict[str, str] = {}
    failed = [p for p in mqprofiles if p.get("alias") == FAILED_EVENTS_ALIAS]
    if failed and failed[0].get("is_activated") and failed[0].get("auth_token") and failed[0].get("broker_address"):
        profile = failed[0]
        extras["EWMS_PILOT_QUEUE_FAILED"] = str(profile["mqid"])
        extras["EWMS_PILOT_QUEUE_FAILED_AUTH_TOKEN"] = str(profile["auth_token"])
        extras["EWMS_PILOT_QUEUE_FAILED_BROKER_TYPE"] = str(profile.get("broker_type") or "rabbitmq")
        extras["EWMS_PILOT_QUEUE_FAILED_BROKER_ADDRESS"] = str(profile["broker_address"])
    if pilot_credential:
        extras["EWMS_PILOT_QUEUE_TOKEN_REFRESH_URL"] = token_refresh_url(config, str(taskforce["workflow_id"]))
        extras["EWMS_PILOT_QUEUE_TOKEN_REFRESH_CREDENTIAL"] = pilot_credential
    for key, value in ((FIRST_MESSAGE, config.pilot_default_first_message), (INCOMING, config.pilot_default_idle)):
        if not str(env.get(key, "")).strip():
            extras[key] = f"{value:g}"
    return extras
