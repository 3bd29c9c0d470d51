"""The management API calls of the embedded MQS: one kept connection, replaced when the broker drops it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from broker_probe import queue_exists
from mqs_helpers import vhost_exists

from ewms_dev.broker_node import BrokerNode
from mqs_client.broker_admin import BrokerAdmin, BrokerUnavailable, Policy


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
    """A counting proxy to the session's broker's management API."""
    node = CountingProxy(("127.0.0.1", broker.management_port))
    yield node
    node.close()


async def test_one_connection_serves_many_calls_and_a_dropped_one_is_replaced(
    broker: BrokerNode, proxy: CountingProxy
) -> None:
    admin = BrokerAdmin(broker.management_url.replace(str(broker.management_port), str(proxy.port)))
    try:
        policy = Policy("p", ".*", {"max-length": 5, "overflow": "reject-publish"})
        for n in range(3):
            await admin.create_vhost(f"admin-keep-{n}", [policy], max_queues=2)
            await admin.declare_queues(f"admin-keep-{n}", ["qa", "qb"])
        assert proxy.accepted == 1
        proxy.cut()
        await admin.declare_queues("admin-keep-0", ["qa"])  # the kept connection is dead: a new one is opened
        assert proxy.accepted == 2
        assert queue_exists(broker.admin_url, "qb", "admin-keep-0")
        stats = await admin.queue_stats("admin-keep-1")
        assert sorted(s.name for s in stats) == ["qa", "qb"]
        for n in range(3):
            await admin.delete_vhost(f"admin-keep-{n}")
        assert proxy.accepted == 2
        assert not vhost_exists(broker.management_url, "admin-keep-0")
        assert not queue_exists(broker.admin_url, "qa", "admin-keep-0")
        assert await admin.queue_stats("admin-keep-0") == []  # gone: no queues, no error
        await admin.delete_vhost("admin-keep-0")  # deleting again is fine
    finally:
        await admin.close()


async def test_an_unreachable_or_refusing_broker_is_reported(broker: BrokerNode, proxy: CountingProxy) -> None:
    admin = BrokerAdmin(broker.management_url.replace(str(broker.management_port), str(proxy.port)), timeout=1.0)
    await admin.delete_vhost("admin-unreachable")
    proxy.close()
    with pytest.raises(BrokerUnavailable, match="cannot reach"):
        await admin.delete_vhost("admin-unreachable")
    await admin.close()
    refusing = BrokerAdmin(f"http://guest:wrong@127.0.0.1:{broker.management_port}")
    with pytest.raises(BrokerUnavailable, match="401"):
        await refusing.create_vhost("admin-refused", [], max_queues=1)
    await refusing.close()
    assert not vhost_exists(broker.management_url, "admin-refused")
