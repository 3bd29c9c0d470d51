"""Secrets at rest in the dev stack (issue 14.5): every file holding a key, a password or a token is 0600 in a 0700
data dir, whatever the umask, and the private broker node has no default user: ``guest/guest`` is refused on AMQP
and on the management API, while the node's own generated administrator (what the MQS uses) works on both."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

from ewms_dev import broker_node
from ewms_dev.devstack import DevStack, StackState

SECRET_FILES = (
    "stack.json",
    "env.sh",
    "keys.json",
    "rabbitmq/admin.json",
    "rabbitmq/broker-node.json",
    "rabbitmq/conf/rabbitmq.conf",
    "rabbitmq/conf/advanced.config",
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    data_dir = tmp_path_factory.mktemp("secrets") / "stack"
    dev = DevStack(data_dir, max_local_jobs=1)
    old_umask = os.umask(0)  # the modes must come from the code, not from a friendly umask
    try:
        state = dev.up()
    finally:
        os.umask(old_umask)
    yield state
    dev.down()


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_secret_files_are_private(stack: StackState) -> None:
    data_dir = Path(stack.data_dir)
    assert _mode(data_dir) == 0o700
    modes = {name: oct(_mode(data_dir / name)) for name in SECRET_FILES}
    assert modes == {name: oct(0o600) for name in SECRET_FILES}
    assert stack.user_token in (data_dir / "env.sh").read_text()


def _amqp_login(port: int, user: str, password: str) -> None:
    params = pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials(user, password), connection_attempts=1
    )
    pika.BlockingConnection(params).close()


def _management_status(port: int, user: str, password: str) -> int:
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/whoami", headers={"Authorization": f"Basic {basic}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_guest_is_refused_and_the_generated_administrator_works(stack: StackState) -> None:
    node = broker_node.BrokerNode(**stack.broker)
    assert node.admin_user != "guest" and len(node.admin_password) >= 32
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        _amqp_login(node.amqp_port, "guest", "guest")
    assert _management_status(node.management_port, "guest", "guest") == 401
    _amqp_login(node.amqp_port, node.admin_user, node.admin_password)
    assert _management_status(node.management_port, node.admin_user, node.admin_password) == 200
    users = json.loads(broker_node.ctl(node, "list_users", "--formatter", "json").stdout)
    assert [u["user"] for u in users] == [node.admin_user]  # no other internal user
