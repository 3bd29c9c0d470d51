"""Move a workflow's failed events back to the input queues they failed from (``ewms-failed.input_queue`` header,
written by the pilot), with the ``ewms-failed`` header removed so that they are processed as new.

Blocking (pika): run it in a thread. At most the events ready when it starts are moved, each published with
publisher confirms before it is acked on the failed-events queue (at-least-once, like every other move). An event
that names no queue of ``inputs`` (or is not an oms-mqclient envelope) is left in the failed-events queue.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass, field

import pika
import zstd

from ewms_wire.failed_events import FAILED_HEADER

from .interface import MQProfile

LOGGER = logging.getLogger(__name__)


@dataclass
class Requeued:
    """What a requeue moved (per input queue) and what it left in place."""

    moved: dict[str, int] = field(default_factory=dict)
    kept: int = 0


def _parameters(profile: MQProfile) -> pika.ConnectionParameters:
    """The queue's broker address (``[amqp[s]://]host[:port][/vhost]``) with its token as the password."""
    raw = str(profile.broker_address)
    parts = urllib.parse.urlsplit(raw if "://" in raw else f"//{raw}")
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return pika.ConnectionParameters(
        host=parts.hostname or "localhost",
        port=parts.port or (5671 if parts.scheme == "amqps" else 5672),
        virtual_host=vhost,
        credentials=pika.PlainCredentials(urllib.parse.unquote(parts.username or ""), str(profile.auth_token)),
        connection_attempts=2,
        socket_timeout=10,
    )


def _target(body: bytes, inputs: dict[str, MQProfile]) -> tuple[str, bytes] | None:
    """The input queue an envelope failed from and the envelope to send back there; None if it names none."""
    try:
        envelope = json.loads(zstd.decompress(body))
        headers = dict(envelope["headers"])
        queue = headers.pop(FAILED_HEADER)["input_queue"]
    except (zstd.Error, ValueError, KeyError, TypeError):
        return None
    if queue not in inputs or "data" not in envelope or envelope["data"] is None:
        return None
    return queue, bytes(zstd.compress(json.dumps({"headers": headers, "data": envelope["data"]}).encode()))


def requeue_failed_events(failed: MQProfile, inputs: dict[str, MQProfile]) -> Requeued:
    """Move the ready failed events back to their input queues (``inputs``: mqid -> profile with a token)."""
    result = Requeued()
    source = pika.BlockingConnection(_parameters(failed))
    targets: dict[str, pika.adapters.blocking_connection.BlockingChannel] = {}
    connections = [source]
    try:
        channel = source.channel()
        ready = channel.queue_declare(failed.mqid, passive=True).method.message_count
        for _ in range(ready):
            method, _props, body = channel.basic_get(failed.mqid, auto_ack=False)
            if method is None:
                break
            found = _target(body, inputs)
            if found is None:
                result.kept += 1  # left unacked: returned to the queue when the connection closes
                continue
            queue, envelope = found
            if queue not in targets:
                connection = pika.BlockingConnection(_parameters(inputs[queue]))
                connections.append(connection)
                targets[queue] = connection.channel()
                targets[queue].confirm_delivery()
            targets[queue].basic_publish(
                "", queue, envelope, pika.BasicProperties(delivery_mode=2), mandatory=True
            )  # raises (nothing acked) if the broker refuses or returns it
            channel.basic_ack(method.delivery_tag)
            result.moved[queue] = result.moved.get(queue, 0) + 1
    finally:
        for connection in reversed(connections):
            if connection.is_open:
                connection.close()
    LOGGER.info("requeued failed events of %s: %s moved, %d kept", failed.workflow_id, result.moved, result.kept)
    return result
