"""Talk to the broker the way users and pilots do: pika and oms-mqclient with a queue token as the password."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import httpx
import mqclient
import pika
from broker_probe import queue_exists

from mqs_client.interface import MQProfile

QUORUM = {"x-queue-type": "quorum"}


def vhost_of(profile: MQProfile) -> str:
    """The vhost of a profile's ``host:port/vhost`` broker address."""
    assert profile.broker_address and "/" in profile.broker_address
    return profile.broker_address.split("/", 1)[1]


def connect(address: str, token: str) -> pika.BlockingConnection:
    """A connection to ``host:port[/vhost]`` authenticated by ``token`` (the OAuth2 backend ignores the username)."""
    where, _, vhost = address.partition("/")
    host, port = where.rsplit(":", 1)
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host,
            int(port),
            virtual_host=vhost or "/",
            credentials=pika.PlainCredentials("", token),
            connection_attempts=1,
            socket_timeout=5,
        )
    )


def pika_publish(address: str, token: str, queue: str, body: bytes) -> None:
    """Redeclare the queue as oms-mqclient does and publish ``body`` with a confirm."""
    with connect(address, token) as conn:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True, arguments=QUORUM)
        channel.basic_publish("", queue, body)


def pika_get(address: str, token: str, queue: str, wait: float = 5.0) -> bytes:
    """Take one message from the queue, waiting up to ``wait`` seconds for it."""
    with connect(address, token) as conn:
        channel = conn.channel()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _method, _props, got = channel.basic_get(queue, auto_ack=True)
            if got is not None:
                return bytes(got)
            time.sleep(0.05)
    raise AssertionError(f"nothing came from {queue} within {wait} s")


def pika_roundtrip(address: str, token: str, queue: str, body: bytes) -> bytes:
    """Publish ``body`` and read it back."""
    pika_publish(address, token, queue, body)
    return pika_get(address, token, queue)


def vhost_exists(management_url: str, vhost: str) -> bool:
    """Whether the broker has the vhost, asked through the management API."""
    response = httpx.get(f"{management_url}/api/vhosts/{urllib.parse.quote(vhost, safe='')}")
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def wait_until_deleted(admin_url: str, queue: str, timeout: float, vhost: str = "/") -> None:
    """Block until the queue is gone (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while queue_exists(admin_url, queue, vhost):
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue} still exists after {timeout} s")
        time.sleep(0.1)


def mq_queue(profile: MQProfile, **kwargs: Any) -> mqclient.Queue:
    """The oms-mqclient queue a user script builds from a profile."""
    assert profile.broker_type and profile.broker_address and profile.auth_token
    return mqclient.Queue(
        profile.broker_type,
        address=profile.broker_address,
        name=profile.mqid,
        auth_token=profile.auth_token,
        **kwargs,
    )


async def mqclient_roundtrip(profile: MQProfile, messages: list[Any]) -> list[Any]:
    """Send ``messages`` through oms-mqclient and read them back with a second client."""
    async with mq_queue(profile).open_pub() as pub:
        for message in messages:
            await pub.send(message)
    received = []
    async with mq_queue(profile, timeout=1).open_sub() as sub:
        async for message in sub:
            received.append(message)
    return received
