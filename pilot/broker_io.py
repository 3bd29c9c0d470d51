"""pika's I/O on the event loop's own transports.

pika's asyncio adapter drives the socket itself: each write watches the socket for writability, sends once it is,
and stops watching (two ``epoll_ctl`` and a loop pass per write, a ``send`` per frame), and each read drains the
socket until ``recv`` fails with ``EAGAIN``. :class:`LoopIOServices` keeps pika's adapter for everything else
(name resolution, connecting, timers) but links the connected socket to the loop's stream transport
(``loop.create_connection(sock=...)``, TLS included), which writes straight to the socket when it can and reads
what is there, without registering anything per write. pika sees the same transport interface
(:class:`pika.adapters.utils.nbio_interface.AbstractStreamTransport`) with the same semantics: ``abort`` drops
pending output and reports the loss later, an error raised by pika while it handles data aborts the connection
with that error, and end-of-file closes it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import cast

from pika.adapters.asyncio_connection import _AsyncioIOServicesAdapter
from pika.adapters.utils import nbio_interface

LOGGER = logging.getLogger(__name__)

StreamDone = Callable[
    [BaseException | tuple[nbio_interface.AbstractStreamTransport, nbio_interface.AbstractStreamProtocol]], None
]


class LoopIOServices(_AsyncioIOServicesAdapter):
    """pika's asyncio I/O services with streams on the loop's transports (pass as ``custom_ioloop``)."""

    def create_streaming_connection(
        self,
        protocol_factory: Callable[[], nbio_interface.AbstractStreamProtocol],
        sock: socket.socket,
        on_done: StreamDone,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> nbio_interface.AbstractIOReference:
        """Link the connected ``sock`` (owned from now on) to a loop transport and pika's protocol, TLS first when
        ``ssl_context`` is given. ``on_done`` gets the pair (the protocol already told of its transport) or the
        error; a failed or cancelled link closes the socket."""
        loop = self.get_native_ioloop()
        bridge = _Bridge(protocol_factory())

        def finished(task: asyncio.Task[object]) -> None:
            if task.cancelled() or task.exception() is not None:
                sock.close()  # a transport that was made closed this same object already: then a no-op
            if not task.cancelled():  # as pika's own: a cancelled operation reports nothing
                on_done(task.exception() or (bridge.transport, bridge.protocol))

        task = loop.create_task(
            loop.create_connection(lambda: bridge, sock=sock, ssl=ssl_context, server_hostname=server_hostname)
        )
        task.add_done_callback(finished)
        return _Pending(task)


class _Pending(nbio_interface.AbstractIOReference):
    """A link being made, which pika may cancel."""

    def __init__(self, task: asyncio.Task[object]) -> None:
        self._task = task

    def cancel(self) -> bool:
        return self._task.cancel()


class _Transport(nbio_interface.AbstractStreamTransport):
    """pika's view of a loop transport."""

    def __init__(self, transport: asyncio.Transport, protocol: nbio_interface.AbstractStreamProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def abort(self) -> None:
        self._transport.abort()

    def get_protocol(self) -> nbio_interface.AbstractStreamProtocol:
        return self._protocol

    def write(self, data: bytes) -> None:
        if not self._transport.is_closing():  # as pika's own transport, writes after an abort are dropped
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()


class _Bridge(asyncio.Protocol):
    """The loop's protocol for a pika protocol: passes data, end-of-file and the loss on."""

    def __init__(self, protocol: nbio_interface.AbstractStreamProtocol) -> None:
        self.protocol = protocol
        self.transport: _Transport | None = None
        self._error: BaseException | None = None  # raised by pika: the reason the connection was aborted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport
        self.transport = _Transport(cast(asyncio.Transport, transport), self.protocol)
        self.protocol.connection_made(self.transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.protocol.data_received(data)
        except Exception as exc:  # as pika's transport: the connection ends with this error
            self._abort(exc)

    def eof_received(self) -> bool:
        try:
            return bool(self.protocol.eof_received())
        except Exception as exc:
            self._abort(exc)
            return True  # aborting already

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.connection_lost(self._error or exc)

    def _abort(self, exc: Exception) -> None:
        LOGGER.exception("broker connection: handling its data failed; aborting it")
        if self._error is None:
            self._error = exc
        assert self.transport is not None
        self.transport.abort()
