"""RabbitMQ links: one AMQP connection and channel per queue (each queue has its own token), on the asyncio loop.

Queues are declared like oms-mqclient does (durable quorum queues), so declarations never conflict. An input link
consumes with manual acks and a prefetch; an output link publishes on the default exchange with publisher confirms.
A link whose connection drops reconnects with exponential back-off, up to ``reconnect_timeout`` seconds; deliveries
received on a dropped channel become *stale*: the broker requeues them itself, so they are neither acked nor nacked.
Refusals (bad token, missing permission, conflicting queue settings) are not retried: they raise
:class:`~pilot.errors.BrokerError` at once; a vhost the broker no longer has (the WMS deletes a workflow's vhost
when it retires its queues) raises :class:`~pilot.errors.QueuesRetiredError`, and so does a connection the broker
closes over its vhost once a probe finds the vhost gone (no reconnection, no events to redeliver). With a token source
(:mod:`pilot.tokens`) a link renews its token before it expires: with ``update-secret`` on the open connection, and in
the parameters of later reconnections. A link declares its queue on its first connection only; reconnections check
that it still exists (a passive declaration) and raise :class:`~pilot.errors.QueueGoneError` when it was deleted
meanwhile, so a deleted queue is never recreated behind its owner's back. Outputs are published ``mandatory``: one
the broker returns (its queue is gone) fails with :class:`~pilot.errors.OutputUnroutableError` instead of being
confirmed and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import pika.spec
from pika.adapters.asyncio_connection import AsyncioConnection

from pilot.broker_io import LoopIOServices
from pilot.config import QueueSpec
from pilot.errors import BrokerError, OutputUnroutableError, QueueGoneError, QueuesRetiredError
from pilot.tokens import TokenSource, TokenSourceError, renewal_time, seconds_left

LOGGER = logging.getLogger(__name__)

QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}  # as oms-mqclient declares them
PERSISTENT = 2  # delivery mode
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 15.0
CLOSE_TIMEOUT = 5.0
VHOST_PROBES, VHOST_PROBE_PAUSE = 10, 0.3  # after a close over the vhost: is it gone? (asked for about 3 s)
TOKEN_RETRY_DELAY = 2.0  # after a failed token renewal
MIN_RENEWAL_INTERVAL = 1.0  # a source that keeps giving nearly expired tokens is not asked in a tight loop
REFUSED_CODES = {403, 404, 406, 530}  # access refused, not found, precondition failed, not allowed


class LinkLostError(Exception):
    """The link's connection or channel closed (or the broker nacked) while an operation was pending."""

    def __init__(self, reason: object) -> None:
        super().__init__(str(reason))
        self.reason = reason


def connection_parameters(spec: QueueSpec, token: str) -> pika.ConnectionParameters:
    """pika parameters for ``spec``: the token is the password, the username comes from the address (or is empty)."""
    address = spec.address
    password = token or address.password
    kwargs: dict[str, Any] = {
        "host": address.host,
        "virtual_host": address.vhost,
        "connection_attempts": 1,
        "socket_timeout": 10,
        "client_properties": {"connection_name": f"ewms-pilot {spec.name} {socket.gethostname()}:{os.getpid()}"},
    }
    if address.port:
        kwargs["port"] = address.port
    if password:
        kwargs["credentials"] = pika.PlainCredentials(address.username, password)
    if address.tls:
        kwargs["ssl_options"] = pika.SSLOptions(ssl.create_default_context(), address.host)
        kwargs.setdefault("port", 5671)
    return pika.ConnectionParameters(**kwargs)


def _broker_reason(exc: BaseException) -> object:
    """What the broker said: the reason a lost link carries, or the exception itself."""
    return exc.reason if isinstance(exc, LinkLostError) else exc


def _is_refusal(exc: BaseException) -> bool:
    reason = _broker_reason(exc)
    if isinstance(
        reason,
        pika.exceptions.ProbableAuthenticationError
        | pika.exceptions.AuthenticationError
        | pika.exceptions.ProbableAccessDeniedError,
    ):
        return True
    return (
        isinstance(reason, pika.exceptions.ChannelClosedByBroker | pika.exceptions.ConnectionClosedByBroker)
        and reason.reply_code in REFUSED_CODES
    )


def _vhost_closed(reason: object) -> bool:
    """The broker closed the connection over its vhost (``320 CONNECTION_FORCED - vhost ... is deleted`` or ``is
    down``, whichever part of a deletion comes first; a vhost can also go down for other reasons)."""
    return (
        isinstance(reason, pika.exceptions.ConnectionClosedByBroker)
        and reason.reply_code == pika.spec.CONNECTION_FORCED
        and "vhost" in reason.reply_text
    )


def _queue_gone(exc: BaseException) -> bool:
    """A passive declaration found no such queue (``404 NOT_FOUND - no queue ...``)."""
    reason = _broker_reason(exc)
    return isinstance(reason, pika.exceptions.ChannelClosedByBroker) and reason.reply_code == pika.spec.NOT_FOUND


def _vhost_gone(exc: BaseException) -> bool:
    """The broker says the vhost does not exist (``530 NOT_ALLOWED - vhost ... not found``, also when pika reports it
    as a probable access denial)."""
    text = str(_broker_reason(exc))
    return "vhost" in text and "not found" in text


class _Link:
    """A connection + channel to one queue that reopens itself after an unexpected close."""

    role = "queue"

    def __init__(
        self,
        spec: QueueSpec,
        reconnect_timeout: float,
        on_fatal: Callable[[BrokerError], None],
        token_source: TokenSource | None = None,
    ) -> None:
        self.spec = spec
        self.reconnect_timeout = reconnect_timeout
        self._on_fatal = on_fatal
        self._token_source = token_source
        self._token = spec.auth_token
        self._token_obtained = time.time()
        self._renewer: asyncio.Task[None] | None = None
        self._conn: AsyncioConnection | None = None
        self._channel: Any = None
        self._state = "new"  # new | connecting | open | reconnecting | closing | closed | failed
        self._declared = False  # the queue was declared once: reconnections only check that it still exists
        self._ready = asyncio.Event()
        self._fatal: BrokerError | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._reconnector: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    def __str__(self) -> str:
        return f"{self.role} queue {self.spec.name} at {self.spec.address}"

    @property
    def is_open(self) -> bool:
        """True while the link is connected and set up."""
        return self._state == "open"

    @property
    def channel(self) -> Any:
        """The current channel (``None`` while disconnected)."""
        return self._channel

    async def open(self) -> None:
        """Connect and set the channel up, retrying transient failures with back-off; then keep the token fresh."""
        await self._connect_with_retry()
        if self._token_source is not None:
            self._renewer = asyncio.ensure_future(self._keep_token_fresh(self._token_source))

    async def wait_ready(self) -> None:
        """Wait until the link is open again; raise :class:`BrokerError` if it gave up."""
        await self._ready.wait()
        if self._fatal is not None:
            raise self._fatal

    async def close(self) -> None:
        """Close the connection (pending deliveries are requeued by the broker)."""
        for task in (self._reconnector, self._renewer):
            if task is not None:
                task.cancel()
        conn, self._state = self._conn, "closing"
        if conn is not None and conn.is_open:
            self._closed = asyncio.get_running_loop().create_future()
            conn.close()
            try:
                await asyncio.wait_for(self._closed, CLOSE_TIMEOUT)
            except TimeoutError:
                LOGGER.warning("%s: connection did not close within %.0fs", self, CLOSE_TIMEOUT)
        self._state = "closed"

    # -- hooks for subclasses --------------------------------------------------------------------------------

    async def _setup(self, channel: Any) -> None:
        """Configure a freshly opened channel (after the queue is declared)."""

    def _lost(self, reason: object) -> None:
        """Called once when an open link loses its connection."""

    # -- internals -------------------------------------------------------------------------------------------

    async def _keep_token_fresh(self, source: TokenSource) -> None:
        """Renew the token each time half of its remaining life has passed, for as long as the link lives."""
        while (due := renewal_time(self._token, self._token_obtained)) is not None:
            await asyncio.sleep(max(MIN_RENEWAL_INTERVAL, due - time.time()))
            if not await self._renew_token(source):
                await asyncio.sleep(TOKEN_RETRY_DELAY)

    async def _renew_token(self, source: TokenSource) -> bool:
        """Get a fresh token and hand it to the open connection (``update-secret``); False when that failed."""
        try:
            token = await source.fresh_token(self.spec.name)
        except TokenSourceError as exc:
            left = seconds_left(self._token)
            LOGGER.warning("%s: token renewal failed (the token expires in %.0fs): %s", self, left or 0, exc)
            return False
        self._token, self._token_obtained = token, time.time()  # later reconnections use it
        conn = self._conn
        if self.is_open and conn is not None:
            try:
                await self._call(lambda cb: conn.update_secret(token, "token renewal", callback=cb))
            except (LinkLostError, pika.exceptions.AMQPError) as exc:
                # a refused secret closes the connection; the reconnection tries the new token and reports refusals
                LOGGER.warning("%s: the broker did not take the renewed token: %r", self, exc)
                return False
        LOGGER.info("%s: token renewed (expires in %.0fs)", self, seconds_left(token) or 0)
        return True

    async def _call(self, start: Callable[[Callable[..., None]], object]) -> Any:
        """Start a callback-style pika operation and await its callback (failing if the link closes first)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.add(fut)

        def done(*args: Any) -> None:
            if not fut.done():
                fut.set_result(args[0] if args else None)

        try:
            start(done)
            return await fut
        finally:
            self._pending.discard(fut)

    def _fail_pending(self, reason: object) -> None:
        for fut in self._pending:
            if not fut.done():
                fut.set_exception(LinkLostError(reason))

    async def _connect_with_retry(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        delay = FIRST_RETRY_DELAY
        while True:
            due = renewal_time(self._token, self._token_obtained)
            if self._token_source is not None and due is not None and due <= time.time():
                # e.g. the job waited in the scheduler's queue, or a renewal is late: never connect with a stale token
                await self._renew_token(self._token_source)
            try:
                await self._connect_once()
                return
            except (pika.exceptions.AMQPError, OSError, LinkLostError) as exc:
                self._abandon_connection()
                if _is_refusal(exc):
                    if self._declared and _queue_gone(exc):
                        gone = f"{self}: the queue no longer exists (deleted while the pilot ran)"
                        raise QueueGoneError(gone) from exc
                    if _vhost_gone(exc):
                        raise QueuesRetiredError(
                            f"{self}: its vhost is gone, the queues were retired: {exc!r}"
                        ) from exc
                    raise BrokerError(f"{self}: the broker refused the pilot: {exc!r}") from exc
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise BrokerError(
                        f"{self}: broker unreachable for {self.reconnect_timeout:g}s, last error: {exc!r}"
                    ) from exc
                LOGGER.warning("%s: cannot connect (%r); retrying in %.1fs", self, exc, min(delay, remaining))
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, MAX_RETRY_DELAY)

    def _start_connection(
        self, on_close: Callable[[AsyncioConnection, object], None] | None = None
    ) -> tuple[AsyncioConnection, asyncio.Future[AsyncioConnection]]:
        """A connection with the link's parameters being opened, and the future of its opening (failed with why)."""
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()

        def on_open(conn: AsyncioConnection) -> None:
            if not opened.done():
                opened.set_result(conn)

        def on_open_error(conn: AsyncioConnection, exc: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(exc if isinstance(exc, BaseException) else LinkLostError(exc))

        conn = AsyncioConnection(
            connection_parameters(self.spec, self._token),
            on_open_callback=on_open,
            on_open_error_callback=on_open_error,
            on_close_callback=on_close,
            custom_ioloop=LoopIOServices(loop),
        )
        return conn, opened

    async def _connect_once(self) -> None:
        self._state = "connecting"
        self._conn, opened = self._start_connection(self._on_connection_closed)
        conn = await opened
        channel = await self._call(lambda cb: conn.channel(on_open_callback=cb))
        channel.add_on_close_callback(self._on_channel_closed)
        self._channel = channel
        passive = self._declared
        await self._call(
            lambda cb: channel.queue_declare(
                self.spec.name, passive=passive, durable=True, arguments=QUEUE_ARGUMENTS, callback=cb
            )
        )
        self._declared = True
        await self._setup(channel)
        self._state = "open"
        self._ready.set()
        LOGGER.info("%s: connected", self)

    def _abandon_connection(self) -> None:
        """Drop a half-opened connection after a failed attempt."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None and conn.is_open:
            conn.close()

    def _on_channel_closed(self, channel: Any, reason: object) -> None:
        if channel is not self._channel:
            return
        self._fail_pending(reason)
        if self._state == "open" and self._conn is not None and self._conn.is_open:
            LOGGER.warning("%s: channel closed by the broker (%s); reconnecting", self, reason)
            self._conn.close()  # the connection's close callback starts the reconnection

    def _on_connection_closed(self, conn: AsyncioConnection, reason: object) -> None:
        if conn is not self._conn:
            return
        self._fail_pending(reason)
        if self._state == "closing":
            if self._closed is not None and not self._closed.done():
                self._closed.set_result(None)
        elif self._state == "open":
            self._state, self._channel = "reconnecting", None
            self._ready.clear()
            self._reconnector = asyncio.ensure_future(self._reconnect(reason))

    async def _reconnect(self, reason: object) -> None:
        """Reconnect after losing an open connection. When the broker closed it over its vhost, first find out
        whether the vhost is gone (its queues retired: nothing to reconnect to, nothing to redeliver, the link ends)
        before anyone is told the link was lost and its events will come back."""
        try:
            if _vhost_closed(reason) and await self._vhost_is_gone():
                raise QueuesRetiredError(f"{self}: its vhost is gone, the queues were retired: {reason}")
            LOGGER.warning("%s: connection lost (%s); reconnecting", self, reason)
            self._lost(reason)
            await self._connect_with_retry()
        except Exception as exc:  # any failure here ends the link for good
            fatal = exc if isinstance(exc, BrokerError) else BrokerError(f"{self}: reconnection failed: {exc!r}")
            log = LOGGER.info if isinstance(fatal, QueuesRetiredError) else LOGGER.error  # retired: the normal end
            log("%s: giving up: %s", self, fatal)
            self._give_up(fatal)

    async def _vhost_is_gone(self) -> bool:
        """Whether the broker no longer has the link's vhost, by throwaway connections (asked again for a few
        seconds while the vhost is only *down*, as it is while being deleted)."""
        for _ in range(VHOST_PROBES):
            exc = await self._probe()
            if exc is None or not _is_refusal(exc):
                return False
            if _vhost_gone(exc):
                return True
            await asyncio.sleep(VHOST_PROBE_PAUSE)  # refused otherwise (e.g. the vhost is down): ask again
        return False

    async def _probe(self) -> BaseException | None:
        """Open and close a connection with the link's parameters; why it failed, if it did (a broker that does not
        answer within ``CLOSE_TIMEOUT``: the probe's connection is closed and the timeout is the answer)."""
        conn, opened = self._start_connection()
        try:
            await asyncio.wait_for(opened, CLOSE_TIMEOUT)
        except TimeoutError as exc:
            if not (conn.is_closing or conn.is_closed):
                conn.close()
            return exc
        except Exception as exc:  # the answer, not a failure of the probe
            return exc
        conn.close()
        return None

    def _give_up(self, fatal: BrokerError) -> None:
        """End the link for good: whoever waits for it, and the pilot, learn why."""
        self._state, self._fatal = "failed", fatal
        if self._renewer is not None:
            self._renewer.cancel()
        self._ready.set()
        self._on_fatal(fatal)


@dataclass(eq=False)
class Delivery:
    """One event received on an input link; settle it with :meth:`ack` or :meth:`nack` exactly once."""

    link: InputLink
    channel: Any
    tag: int
    body: bytes
    redelivered: bool

    @property
    def stale(self) -> bool:
        """True when the channel it came on is gone (the broker has requeued it)."""
        return self.channel is not self.link.channel or not self.channel.is_open

    def ack(self) -> bool:
        """Acknowledge (the event is done); False when stale."""
        return self.link.settle(self, ack=True)

    def nack(self) -> bool:
        """Reject with requeue (the event will be redelivered); False when stale."""
        return self.link.settle(self, ack=False)


class InputLink(_Link):
    """Consumes one input queue with manual acks and a prefetch."""

    role = "input"

    def __init__(
        self,
        spec: QueueSpec,
        reconnect_timeout: float,
        on_fatal: Callable[[BrokerError], None],
        token_source: TokenSource | None = None,
        *,
        prefetch: int,
        on_delivery: Callable[[Delivery], None],
        on_lost: Callable[[InputLink], None],
    ) -> None:
        super().__init__(spec, reconnect_timeout, on_fatal, token_source)
        self.prefetch = prefetch
        self._on_delivery = on_delivery
        self._on_lost = on_lost
        self._consuming = False
        self._consumer_tag = ""

    async def start_consuming(self) -> None:
        """Start (and, after reconnections, resume) delivering events to ``on_delivery``."""
        self._consuming = True
        if self.is_open:
            await self._consume(self._channel)

    async def stop_consuming(self) -> None:
        """Cancel the consumer; events already received stay ours until settled."""
        self._consuming = False
        if self.is_open and self._consumer_tag:
            channel, tag = self._channel, self._consumer_tag
            try:
                await self._call(lambda cb: channel.basic_cancel(tag, callback=cb))
            except LinkLostError:
                pass  # the connection is gone: nothing left to cancel
        self._consumer_tag = ""

    def settle(self, delivery: Delivery, *, ack: bool) -> bool:
        """Ack or nack (requeue) ``delivery`` unless it is stale."""
        if delivery.stale:
            return False
        try:
            if ack:
                delivery.channel.basic_ack(delivery.tag)
            else:
                delivery.channel.basic_nack(delivery.tag, requeue=True)
        except pika.exceptions.AMQPError as exc:
            LOGGER.warning("%s: could not %s delivery %d: %r", self, "ack" if ack else "nack", delivery.tag, exc)
            return False
        return True

    async def _setup(self, channel: Any) -> None:
        await self._call(lambda cb: channel.basic_qos(prefetch_count=self.prefetch, callback=cb))
        channel.add_on_cancel_callback(self._on_broker_cancel)
        if self._consuming:
            await self._consume(channel)

    async def _consume(self, channel: Any) -> None:
        def on_message(ch: Any, method: Any, _props: Any, body: bytes) -> None:
            self._on_delivery(Delivery(self, ch, method.delivery_tag, body, bool(method.redelivered)))

        def start(cb: Callable[..., None]) -> None:
            self._consumer_tag = channel.basic_consume(self.spec.name, on_message, auto_ack=False, callback=cb)

        await self._call(start)

    def _on_broker_cancel(self, _frame: Any) -> None:
        LOGGER.warning("%s: the broker cancelled the consumer (queue deleted?); no more events from it", self)
        self._consumer_tag = ""

    def _lost(self, reason: object) -> None:
        self._consumer_tag = ""
        self._on_lost(self)


class OutputLink(_Link):
    """Publishes to one queue (default exchange, ``mandatory``) and waits for each publisher confirm.

    Each message carries its publish number as ``message_id``, so that a message the broker returns (sent before
    its confirm) is matched to its publish.
    """

    role = "output"

    def __init__(
        self,
        spec: QueueSpec,
        reconnect_timeout: float,
        on_fatal: Callable[[BrokerError], None],
        token_source: TokenSource | None = None,
    ) -> None:
        super().__init__(spec, reconnect_timeout, on_fatal, token_source)
        self._seq = 0
        self._unconfirmed: dict[int, asyncio.Future[None]] = {}
        self._returned: dict[int, str] = {}

    def publish(self, body: bytes) -> Awaitable[None]:
        """Publish ``body``; the result resolves on the broker's confirm, or fails with :class:`LinkLostError`
        (to publish again) or :class:`OutputUnroutableError` (the queue is gone)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self.is_open:
            fut.set_exception(LinkLostError("not connected"))
            return fut
        self._seq += 1
        self._unconfirmed[self._seq] = fut
        properties = pika.BasicProperties(delivery_mode=PERSISTENT, message_id=str(self._seq))
        self._channel.basic_publish("", self.spec.name, body, properties, mandatory=True)
        return fut

    async def _setup(self, channel: Any) -> None:
        self._seq = 0
        self._returned.clear()
        channel.add_on_return_callback(self._on_return)
        await self._call(lambda cb: channel.confirm_delivery(self._on_confirm, callback=cb))

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        try:
            self._returned[int(properties.message_id)] = f"{method.reply_code} {method.reply_text}"
        except (TypeError, ValueError):
            LOGGER.warning("%s: the broker returned a message that is not ours: %s", self, method)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        if method.multiple:
            tags = [t for t in self._unconfirmed if t <= method.delivery_tag]
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            fut = self._unconfirmed.pop(tag, None)
            if fut is None or fut.done():
                continue
            returned = self._returned.pop(tag, None)
            if returned is not None:
                fut.set_exception(
                    OutputUnroutableError(
                        f"the output to queue {self.spec.name} was returned unroutable ({returned}): "
                        "the queue no longer exists"
                    )
                )
            elif acked:
                fut.set_result(None)
            else:
                fut.set_exception(LinkLostError("the broker nacked the published message"))

    def _fail_pending(self, reason: object) -> None:
        super()._fail_pending(reason)
        unconfirmed, self._unconfirmed = self._unconfirmed, {}
        for fut in unconfirmed.values():
            if not fut.done():
                fut.set_exception(LinkLostError(reason))
