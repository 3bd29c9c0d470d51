"""The admin connections of the embedded MQS: kept between calls, replaced when the broker drops them."""

from __future__ import annotations

import socket
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
from mqs_helpers import admin_queue_exists

from ewms_dev.broker_node import BrokerNode
from mqs_client.broker_admin import BrokerAdmin, BrokerUnavailable


class CountingProxy:
    """A TCP proxy in front of the broker that counts the connections it accepts and can cut them all."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.accepted = 0
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every proxied connection, as a broker restart does."""
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._sockets.clear()

    def close(self) -> None:
        """Stop accepting and drop everything."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        except OSError:
            pass
        self._listener.close()
        self.cut()


@pytest.fixture
def proxy(broker: BrokerNode) -> Iterator[CountingProxy]:
    """A counting proxy to the session's broker."""
    node = CountingProxy(("127.0.0.1", broker.amqp_port))
    yield node
    node.close()


def via(admin_url: str, port: int) -> str:
    """The admin URL with the proxy's port."""
    parts = urllib.parse.urlsplit(admin_url)
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


async def test_one_connection_serves_many_calls_and_a_dropped_one_is_replaced(
    broker: BrokerNode, proxy: CountingProxy
) -> None:
    admin = BrokerAdmin(via(broker.admin_url, proxy.port))
    try:
        for n in range(3):
            await admin.declare_queues([f"admin-keep-{n}a", f"admin-keep-{n}b"])
        assert proxy.accepted == 1
        proxy.cut()
        await admin.declare_queues(["admin-keep-after-cut"])  # the kept connection is dead: a new one is opened
        assert proxy.accepted == 2
        assert admin_queue_exists(broker.admin_url, "admin-keep-after-cut")
        await admin.delete_queues([f"admin-keep-{n}{x}" for n in range(3) for x in "ab"] + ["admin-keep-after-cut"])
        assert proxy.accepted == 2
        assert not admin_queue_exists(broker.admin_url, "admin-keep-0a")
    finally:
        await admin.close()


async def test_an_unreachable_broker_is_reported_after_the_kept_connection_fails(
    broker: BrokerNode, proxy: CountingProxy
) -> None:
    admin = BrokerAdmin(via(broker.admin_url, proxy.port), connect_timeout=1.0)
    await admin.declare_queues(["admin-unreachable"])
    proxy.close()
    with pytest.raises(BrokerUnavailable, match="cannot connect"):
        await admin.declare_queues(["admin-unreachable"])
    await admin.close()
    await BrokerAdmin(broker.admin_url).delete_queues(["admin-unreachable"])
