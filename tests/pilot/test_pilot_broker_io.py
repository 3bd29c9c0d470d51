"""pika streams on the loop's transports (pilot.broker_io): data both ways, abort, end-of-file, errors, TLS, cancel.

Each scenario runs on asyncio's loop and on uvloop (the pilot's), over a connected socket pair whose other end is
the "broker"; the pika side is a recording stand-in for pika's protocol (the real one is exercised by every pilot
test against the private broker).
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pika.adapters.utils import nbio_interface

from pilot.broker_io import LoopIOServices

Runner = Callable[[Coroutine[Any, Any, None]], None]
RUNNERS = pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])


class Recorder(nbio_interface.AbstractStreamProtocol):
    """Stands in for pika's protocol: records what the transport tells it."""

    def __init__(self, fail_on: bytes | None = None) -> None:
        self.transport: nbio_interface.AbstractStreamTransport | None = None
        self.data = bytearray()
        self.calls: list[str] = []
        self.lost: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.fail_on = fail_on
        self.arrived = asyncio.Event()

    def connection_made(self, transport: nbio_interface.AbstractStreamTransport) -> None:
        self.calls.append("made")
        self.transport = transport

    def connection_lost(self, error: BaseException | None) -> None:
        self.calls.append("lost")
        self.lost.set_result(error)

    def eof_received(self) -> bool:
        self.calls.append("eof")
        return False  # as pika's: let the transport close

    async def received(self, expected: bytes) -> None:
        """Wait until the data so far is ``expected``."""
        while bytes(self.data) != expected:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.arrived.set()
        if self.fail_on is not None and self.fail_on in self.data:
            raise ValueError("bad frame")


async def link(sock: socket.socket, protocol: Recorder, **tls: Any) -> nbio_interface.AbstractStreamTransport:
    """Link ``sock`` to ``protocol`` through LoopIOServices; the transport pika gets."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    LoopIOServices(loop).create_streaming_connection(lambda: protocol, sock, done.set_result, **tls)
    result = await asyncio.wait_for(done, 10)
    assert not isinstance(result, BaseException), result
    transport, linked = result
    assert linked is protocol and protocol.transport is transport and transport.get_protocol() is protocol
    return transport


def pair() -> tuple[socket.socket, socket.socket]:
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    broker.setblocking(False)
    return ours, broker


async def recv_exactly(sock: socket.socket, n: int) -> bytes:
    loop, got = asyncio.get_running_loop(), b""
    while len(got) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, n - len(got)), 10)
        assert chunk, "peer closed"
        got += chunk
    return got


@RUNNERS
def test_data_goes_both_ways_and_frames_written_together_arrive_in_order(run: Runner) -> None:
    async def scenario() -> None:
        ours, broker = pair()
        protocol = Recorder()
        transport = await link(ours, protocol)
        for frame in (b"method;", b"header;", b"body"):  # a publish: three writes in one loop pass
            transport.write(frame)
        assert await recv_exactly(broker, 18) == b"method;header;body"
        await asyncio.get_running_loop().sock_sendall(broker, b"deliver")
        await protocol.received(b"deliver")
        assert transport.get_write_buffer_size() == 0
        assert protocol.calls == ["made"]
        transport.abort()
        assert await protocol.lost is None
        broker.close()

    run(scenario())


@RUNNERS
def test_abort_reports_the_loss_later_and_drops_later_writes(run: Runner) -> None:
    async def scenario() -> None:
        ours, broker = pair()
        protocol = Recorder()
        transport = await link(ours, protocol)
        transport.abort()
        assert protocol.calls == ["made"]  # not within abort()
        transport.write(b"too late")  # dropped, as pika's own transport does
        assert await protocol.lost is None
        assert protocol.calls == ["made", "lost"]
        assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(broker, 100), 10) == b""
        assert ours.fileno() == -1
        broker.close()

    run(scenario())


@RUNNERS
def test_the_broker_closing_the_socket_is_end_of_file_then_the_loss(run: Runner) -> None:
    async def scenario() -> None:
        ours, broker = pair()
        protocol = Recorder()
        await link(ours, protocol)
        broker.close()
        assert await asyncio.wait_for(protocol.lost, 10) is None
        assert protocol.calls == ["made", "eof", "lost"]

    run(scenario())


@RUNNERS
def test_an_error_while_pika_handles_data_aborts_the_connection_with_that_error(run: Runner) -> None:
    async def scenario() -> None:
        ours, broker = pair()
        protocol = Recorder(fail_on=b"garbage")
        await link(ours, protocol)
        await asyncio.get_running_loop().sock_sendall(broker, b"garbage")
        error = await asyncio.wait_for(protocol.lost, 10)
        assert isinstance(error, ValueError) and str(error) == "bad frame"
        assert await asyncio.wait_for(asyncio.get_running_loop().sock_recv(broker, 100), 10) == b""
        broker.close()

    run(scenario())


@RUNNERS
def test_a_cancelled_link_closes_the_socket_and_reports_nothing(run: Runner) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ours, broker = pair()
        results: list[object] = []
        ref = LoopIOServices(loop).create_streaming_connection(Recorder, ours, results.append)
        assert ref.cancel()
        await asyncio.sleep(0.05)
        assert results == [] and ours.fileno() == -1
        broker.close()

    run(scenario())


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@RUNNERS
def test_tls_is_set_up_on_the_connected_socket_and_checks_the_name(run: Runner, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.create_default_context(cafile=str(cert))

        class Echo(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data.upper())  # type: ignore[attr-defined]

        ours, broker = pair()
        server = asyncio.ensure_future(loop.connect_accepted_socket(Echo, broker, ssl=server_ctx))
        protocol = Recorder()
        transport = await link(ours, protocol, ssl_context=client_ctx, server_hostname="localhost")
        await server
        transport.write(b"amqps")
        await protocol.received(b"AMQPS")
        transport.abort()
        assert await protocol.lost is None

        ours, broker = pair()
        server = asyncio.ensure_future(loop.connect_accepted_socket(Echo, broker, ssl=server_ctx))
        done: asyncio.Future[Any] = loop.create_future()
        LoopIOServices(loop).create_streaming_connection(
            Recorder, ours, done.set_result, ssl_context=client_ctx, server_hostname="broker.example.org"
        )
        error = await asyncio.wait_for(done, 10)
        assert isinstance(error, ssl.SSLCertVerificationError)  # the name does not match the certificate
        assert ours.fileno() == -1
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)

    run(scenario())
