"""Declare and delete queues on RabbitMQ with an admin account (blocking pika, run in a worker thread).

Queues are declared exactly as oms-mqclient declares them (durable, quorum), so a user's or pilot's
redeclare never conflicts. Admin connections are kept open between calls (opening one costs more than declaring
a queue); a kept connection that fails, e.g. after a broker restart, is dropped and the call retried once on a
new one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import pika
import pika.exceptions

LOGGER = logging.getLogger(__name__)

QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}
MAX_IDLE_CONNECTIONS = 4
BROKER_ERRORS = (pika.exceptions.AMQPError, OSError)


class BrokerUnavailable(Exception):
    """The broker could not be reached, refused the admin login, or refused the operation."""


class BrokerAdmin:
    """Queue operations over a small pool of admin connections, one connection per call at a time."""

    def __init__(self, admin_url: str, connect_timeout: float = 5.0) -> None:
        self._params = pika.URLParameters(admin_url)
        self._params.connection_attempts = 1
        self._params.socket_timeout = connect_timeout
        self._params.stack_timeout = connect_timeout * 2
        self._params.blocked_connection_timeout = connect_timeout * 2
        self._params.heartbeat = 0  # idle between calls: no heartbeats to miss; a dead one fails on use instead
        self.where = f"{self._params.host}:{self._params.port}"
        self._idle: list[pika.BlockingConnection] = []
        self._lock = threading.Lock()

    async def declare_queues(self, names: Sequence[str]) -> None:
        """Create the queues (durable quorum); existing ones are left as they are."""
        await asyncio.to_thread(self._run, "declare", names)

    async def delete_queues(self, names: Sequence[str]) -> None:
        """Delete the queues with their messages; a queue that is already gone is fine."""
        await asyncio.to_thread(self._run, "delete", names)

    async def close(self) -> None:
        """Close the kept connections (a later call opens a new one)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            await asyncio.to_thread(_close, connection, self.where)

    def _run(self, action: str, names: Sequence[str]) -> None:
        with self._lock:
            kept = self._idle.pop() if self._idle else None
        if kept is not None:
            try:
                self._act_all(kept, action, names)
                return
            except BROKER_ERRORS as exc:
                LOGGER.info("kept admin connection to %s failed (%r); retrying on a new one", self.where, exc)
                _close(kept, self.where)
        try:
            connection = pika.BlockingConnection(self._params)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"cannot connect to the broker at {self.where}: {exc!r}") from exc
        try:
            self._act_all(connection, action, names)
        except BROKER_ERRORS as exc:
            _close(connection, self.where)
            raise BrokerUnavailable(f"broker at {self.where} failed to {action} queues: {exc!r}") from exc

    def _act_all(self, connection: pika.BlockingConnection, action: str, names: Sequence[str]) -> None:
        """Act on every queue, then keep the connection for the next call (or close it if enough are kept)."""
        for name in names:
            self._act(connection, action, name)
        LOGGER.debug("%s %d queue(s) on %s: done", action, len(names), self.where)
        with self._lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        _close(connection, self.where)

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


def _close(connection: pika.BlockingConnection, where: str) -> None:
    if connection.is_open:
        try:
            connection.close()
        except BROKER_ERRORS:
            LOGGER.debug("closing the admin connection to %s failed", where, exc_info=True)
