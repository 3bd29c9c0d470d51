"""Declare and delete queues on RabbitMQ with an admin account (blocking pika, run in a worker thread).

Queues are declared exactly as oms-mqclient declares them (durable, quorum), so a user's or pilot's
redeclare never conflicts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pika
import pika.exceptions

LOGGER = logging.getLogger(__name__)

QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}


class BrokerUnavailable(Exception):
    """The broker could not be reached, refused the admin login, or refused the operation."""


class BrokerAdmin:
    """Short-lived admin connections, one per batch of queue operations."""

    def __init__(self, admin_url: str, connect_timeout: float = 5.0) -> None:
        self._params = pika.URLParameters(admin_url)
        self._params.connection_attempts = 1
        self._params.socket_timeout = connect_timeout
        self._params.stack_timeout = connect_timeout * 2
        self._params.blocked_connection_timeout = connect_timeout * 2
        self.where = f"{self._params.host}:{self._params.port}"

    async def declare_queues(self, names: Sequence[str]) -> None:
        """Create the queues (durable quorum); existing ones are left as they are."""
        await asyncio.to_thread(self._run, "declare", names)

    async def delete_queues(self, names: Sequence[str]) -> None:
        """Delete the queues with their messages; a queue that is already gone is fine."""
        await asyncio.to_thread(self._run, "delete", names)

    def _run(self, action: str, names: Sequence[str]) -> None:
        try:
            connection = pika.BlockingConnection(self._params)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BrokerUnavailable(f"cannot connect to the broker at {self.where}: {exc!r}") from exc
        try:
            for name in names:
                self._act(connection, action, name)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BrokerUnavailable(f"broker at {self.where} failed to {action} queues: {exc!r}") from exc
        finally:
            if connection.is_open:
                try:
                    connection.close()
                except (pika.exceptions.AMQPError, OSError):
                    LOGGER.debug("closing the admin connection to %s failed", self.where, exc_info=True)
        LOGGER.debug("%s %d queue(s) on %s: done", action, len(names), self.where)

    @staticmethod
    def _act(connection: pika.BlockingConnection, action: str, name: str) -> None:
        channel = connection.channel()
        try:
            if action == "declare":
                channel.queue_declare(name, durable=True, arguments=QUEUE_ARGUMENTS)
            else:
                channel.queue_delete(name)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if action == "delete" and exc.reply_code == 404:
                return  # already gone (the channel is closed by the broker)
            raise
        channel.close()
