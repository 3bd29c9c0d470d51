"""``ewms query``: workflows, task directives or taskforces matching a MongoDB filter, across all pages."""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

from ewms_client import QUERY_KINDS
from wms.cli.argtypes import positive_int
from wms.cli.exits import CLIError, Exit
from wms.cli.output import add_json_option, note, print_json, table
from wms.cli.settings import add_connection_options, connect

TABLE_COLUMNS = {
    "workflows": ["workflow_id", "name", "owner", "priority", "deactivated", "labels"],
    "task-directives": [
        "task_id",
        "name",
        "workflow_id",
        "cluster_locations",
        "input_queue_aliases",
        "output_queue_aliases",
        "task_image",
    ],
    "taskforces": ["taskforce_uuid", "task_id", "cluster_location", "phase", "n_workers", "retry_of", "retried_as"],
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``query``."""
    p = subparsers.add_parser(
        "query",
        help="find workflows, task directives or taskforces",
        description="Find the objects matching a MongoDB filter, following every page of results.",
        epilog='example: ewms query taskforces --filter \'{"phase": "condor-submit"}\' '
        "--projection taskforce_uuid,phase",
    )
    p.add_argument("kind", choices=QUERY_KINDS, help="what to find")
    p.add_argument("--filter", default="{}", metavar="JSON", help="MongoDB filter as a JSON object (default: {})")
    p.add_argument("--projection", metavar="A,B", help="comma-separated fields to return (and show)")
    p.add_argument("--max", type=positive_int, metavar="N", help="stop after N results")
    p.add_argument("--page-size", type=positive_int, metavar="N", help="results per request (server default if unset)")
    add_json_option(p, help="print the results as a JSON array")
    add_connection_options(p)
    p.set_defaults(handler=query)


def parse_filter(text: str) -> dict[str, Any]:
    """The ``--filter`` JSON object."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CLIError(f"--filter is not valid JSON: {exc}", Exit.USAGE) from exc
    if not isinstance(value, dict):
        raise CLIError('--filter must be a JSON object, e.g. {"workflow_id": "WF-..."}', Exit.USAGE)
    return value


def parse_projection(text: str | None) -> list[str] | None:
    """The ``--projection`` field names (None: every field)."""
    if text is None:
        return None
    fields = list(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    if not fields:
        raise CLIError("--projection needs at least one field name", Exit.USAGE)
    return fields


async def query(args: argparse.Namespace) -> int:
    """Collect the results (up to --max) and print them."""
    filter_, projection = parse_filter(args.filter), parse_projection(args.projection)
    results: list[dict[str, Any]] = []
    async with connect(args) as wms:
        pages = wms.query(args.kind, filter_, projection, limit=args.page_size)
        async with contextlib.aclosing(pages):
            async for item in pages:
                results.append(item)
                if len(results) == args.max:
                    break
    if args.json:
        print_json(results)
    else:
        columns = projection or TABLE_COLUMNS[args.kind]
        print(table([c.upper() for c in columns], [[item.get(c) for c in columns] for item in results]))
    count = len(results)
    note(f"{count} result{'' if count == 1 else 's'}" + (" (--max reached)" if count == args.max else ""))
    return Exit.OK
