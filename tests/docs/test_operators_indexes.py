"""The MongoDB index table of Docs/operators.md lists exactly the indexes the WMS and its embedded MQS create.

Key directions are not compared: nx-27017 lists every key as ascending (and names indexes its own way)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from mqs_client import EmbeddedMQS, MQSConfig
from wms.database.store import EMBEDDED_ID_KEY, Store
from wms.schema import load

DOCS = Path(__file__).resolve().parents[2] / "Docs"


def documented() -> dict[str, set[str]]:
    """Collection -> its indexes as the guide's table writes them (`a` + `b`, `c` (unique)), directions left out."""
    table = (DOCS / "operators.md").read_text().split("| collection | indexes |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)`[^|]* \| (.+) \|$", table, re.MULTILINE)
    return {name: {i.replace(" (descending)", "").strip() for i in cell.split(";")} for name, cell in rows}


def written(index: Mapping[str, Any]) -> str:
    """One index as the guide writes it, without directions (the embedded server's stand-in for ``_id`` as ``_id``)."""
    fields = " + ".join(f"`{'_id' if field == EMBEDDED_ID_KEY else field}`" for field in index["key"])
    return fields + (" (unique)" if index.get("unique") else "")


async def test_the_documented_indexes_are_those_created(mongo_uri: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    db = client[f"t_{uuid.uuid4().hex[:8]}"]
    try:
        await Store(client, db.name, load(str(DOCS / "openapi.json"))).ensure_indexes()
        config = MQSConfig(
            broker_address="127.0.0.1:5672",
            broker_management_url="http://user:password@127.0.0.1:15672",
            broker_token_signing_key="a-signing-key-of-at-least-32-bytes",
        )
        await EmbeddedMQS(db, config).ensure_indexes()
        created = {
            name: {written(index) async for index in await db[name].list_indexes() if index["name"] != "_id_"}
            for name in await db.list_collection_names()
        }
    finally:
        await client.drop_database(db.name)
        await client.close()
    assert {"workflows", "taskforces", "mq_profiles"} <= set(created)
    assert documented() == created, created
