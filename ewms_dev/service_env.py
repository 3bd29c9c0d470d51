"""The environment of a WMS or a ``local``-backend TMS wired to a private database server and broker node (the dev
stack, tests and benchmarks each add their own settings on top)."""

from __future__ import annotations

import json
from pathlib import Path

from ewms_dev.broker_node import BrokerNode


def wms_env(
    mongo_uri: str, broker: BrokerNode, auth_key: str, audience: str, clusters: dict[str, str], port: int
) -> dict[str, str]:
    """A WMS on ``127.0.0.1:port`` with the embedded MQS on ``broker``, taking HS256 tokens signed with ``auth_key``."""
    return {
        "MONGODB_URI": mongo_uri,
        "REST_HOST": "127.0.0.1",
        "REST_PORT": str(port),
        "AUTH_SIGNING_KEY": auth_key,
        "AUTH_AUDIENCE": audience,
        "EWMS_CLUSTERS": json.dumps(clusters),
        "BROKER_ADDRESS": broker.address,
        "BROKER_MANAGEMENT_URL": broker.management_url,
        "BROKER_TOKEN_SIGNING_KEY": broker.signing_key,
    }


def tms_env(wms_url: str, token: str, schedd: str, state_dir: Path) -> dict[str, str]:
    """A TMS for ``schedd`` with the ``local`` backend (pilots as processes on this machine), state in ``state_dir``."""
    return {
        "EWMS_ADDRESS": wms_url,
        "EWMS_TOKEN": token,
        "TMS_SCHEDD": schedd,
        "TMS_BACKEND": "local",
        "TMS_STATE_DIR": str(state_dir),
    }
