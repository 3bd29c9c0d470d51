"""Start and stop a private RabbitMQ node (own ports, data dir, OAuth2 signing key) for tests and the dev stack.

The node runs beside any system broker. Its OAuth2 backend accepts HS256 JWTs signed with the key given here
as AMQP passwords (resource server id ``rabbitmq``); the internal backend has no ``guest`` user, only the node's own
administrator (loopback only) with a password generated for the node and kept, with the signing key, in files of
mode 0600 under its data dir.

CLI: ``python -m ewms_dev.broker_node up DATA_DIR`` prints the node's settings as JSON; ``down DATA_DIR`` stops it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

from ewms_dev.processes import free_port, port_open, spawn
from tms.files import atomic_write_text

LOGGER = logging.getLogger(__name__)

RESOURCE_SERVER_ID = "rabbitmq"
SIGNING_KEY_ID = "ewms"
STATE_FILE = "broker-node.json"
ADMIN_FILE = "admin.json"  # the node's administrator: {"user": ..., "password": ...}, mode 0600
ADMIN_USER = "ewms-admin"
DEBIAN_BIN = "/usr/lib/rabbitmq/bin"  # Debian: the scripts behind the wrappers in /usr/sbin


@dataclass(frozen=True)
class BrokerNode:
    """Where a running private node listens and how to sign tokens for it."""

    nodename: str
    amqp_port: int
    management_port: int
    dist_port: int
    data_dir: str
    signing_key: str  # HS256 secret (text) that the node's OAuth2 backend trusts
    pid: int
    admin_user: str
    admin_password: str

    @property
    def address(self) -> str:
        """Broker address as MQ profiles carry it (host:port, no credentials)."""
        return f"127.0.0.1:{self.amqp_port}"

    @property
    def admin_url(self) -> str:
        """AMQP URL with the node's loopback-only administrator on the default vhost."""
        return self.admin_url_in("/")

    def admin_url_in(self, vhost: str) -> str:
        """:attr:`admin_url` on ``vhost`` (a workflow's vhost, to look at its queues directly)."""
        credentials = f"{self.admin_user}:{urllib.parse.quote(self.admin_password, safe='')}"
        return f"amqp://{credentials}@127.0.0.1:{self.amqp_port}/{urllib.parse.quote(vhost, safe='')}"

    @property
    def management_url(self) -> str:
        """Management API URL with the same account (tagged ``administrator``: creates vhosts and policies)."""
        credentials = f"{self.admin_user}:{urllib.parse.quote(self.admin_password, safe='')}"
        return f"http://{credentials}@127.0.0.1:{self.management_port}"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _admin(data: Path) -> tuple[str, str]:
    """The node's administrator: generated on the first start, then read back from its 0600 file."""
    path = data / ADMIN_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        return str(saved["user"]), str(saved["password"])
    password = secrets.token_urlsafe(32)
    atomic_write_text(path, json.dumps({"user": ADMIN_USER, "password": password}), mode=0o600)
    return ADMIN_USER, password


def _write_config(conf_dir: Path, amqp_port: int, mgmt_port: int, signing_key: str, admin: tuple[str, str]) -> None:
    """rabbitmq.conf (with the administrator created on a fresh node instead of ``guest``) and advanced.config (with
    the signing key), both 0600."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    user, password = admin
    atomic_write_text(
        conf_dir / "rabbitmq.conf",
        "\n".join(
            [
                f"listeners.tcp.default = 127.0.0.1:{amqp_port}",
                f"management.tcp.port = {mgmt_port}",
                "management.tcp.ip = 127.0.0.1",
                "auth_backends.1 = rabbit_auth_backend_oauth2",
                "auth_backends.2 = internal",
                f"default_user = {user}",
                f"default_pass = {password}",
                "default_user_tags.administrator = true",
                "default_permissions.configure = .*",
                "default_permissions.read = .*",
                "default_permissions.write = .*",
                f"loopback_users.{user} = true",
                "log.console = false",
                "log.file.level = warning",
                # quorum queues on one node need no peers; keep disk alarms out of a small tmp dir
                "disk_free_limit.absolute = 50MB",
                "",
            ]
        ),
        mode=0o600,
    )
    key = _b64url(signing_key.encode())
    atomic_write_text(
        conf_dir / "advanced.config",
        "[{rabbitmq_auth_backend_oauth2, ["
        f'{{resource_server_id, <<"{RESOURCE_SERVER_ID}">>}}, '
        f'{{key_config, [{{default_key, <<"{SIGNING_KEY_ID}">>}}, '
        f'{{signing_keys, #{{<<"{SIGNING_KEY_ID}">> => {{map, #{{<<"kty">> => <<"oct">>, '
        f'<<"alg">> => <<"HS256">>, <<"k">> => <<"{key}">>}}}}}}}}]}}'
        "]}].\n",
        mode=0o600,
    )
    (conf_dir / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_auth_backend_oauth2].\n")


def _make_reachable(path: Path) -> None:
    """RabbitMQ runs as user ``rabbitmq``: it must be able to traverse every ancestor of its data dir.

    Root-only ancestors inside the temp dir (pytest's ``tmp_path``) get ``o+x``; elsewhere we stop with a clear error.
    """
    tmp_root = Path(tempfile.gettempdir()).resolve()
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH:
            continue
        if parent == tmp_root or tmp_root in parent.parents:
            parent.chmod(mode | stat.S_IXOTH)
        else:
            raise RuntimeError(f"{parent} is not traversable by user rabbitmq; choose a data dir elsewhere")


def _chown_rabbitmq(path: Path) -> None:
    if os.geteuid() != 0:
        return
    _make_reachable(path)
    try:
        shutil.chown(path, "rabbitmq", "rabbitmq")
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                shutil.chown(os.path.join(root, name), "rabbitmq", "rabbitmq")
    except LookupError:  # no rabbitmq user: the server runs as the current user
        pass


def _direct_home() -> str | None:
    """As root on Debian, the rabbitmq user's home; None where the plain wrappers are to be used.

    The wrappers (``rabbitmq-server``, ``rabbitmqctl``) switch to user ``rabbitmq``, which loses access to a data dir
    under root-only directories: any new pytest session resets pytest's temp root to mode 0700, even while a node
    runs under it. So as root the scripts behind the wrappers run directly, staying root, with HOME set to the
    rabbitmq user's home so that node and CLI share its Erlang cookie.
    """
    if os.geteuid() != 0 or not os.access(f"{DEBIAN_BIN}/rabbitmq-server", os.X_OK):
        return None
    try:
        home = pwd.getpwnam("rabbitmq").pw_dir
    except KeyError:
        return None
    return home if os.path.exists(os.path.join(home, ".erlang.cookie")) else None


def _tool(name: str) -> tuple[str, dict[str, str]]:
    """The command for a RabbitMQ script, and the environment it needs on top of ours."""
    home = _direct_home()
    return (f"{DEBIAN_BIN}/{name}", {"HOME": home}) if home else (name, {})


def ctl(
    node: BrokerNode, *args: str, check: bool = True, timeout: float = 90.0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``rabbitmqctl -n NODE -q ARGS...`` against the node, its plugins' commands (``add_uaa_key``) included;
    ``stdin`` is its input (a password, kept off the command line)."""
    command, extra = _tool("rabbitmqctl")
    env = dict(os.environ, RABBITMQ_ENABLED_PLUGINS_FILE=str(Path(node.data_dir) / "conf" / "enabled_plugins"), **extra)
    return subprocess.run(
        [command, "-n", node.nodename, "-q", *args],
        env=env,
        check=check,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )


def _secure_users(node: BrokerNode) -> None:
    """Make the node's internal users exactly what this module configures, also on data from an older node: the
    administrator exists and ``guest`` does not."""
    users = {u["user"] for u in json.loads(ctl(node, "list_users", "--formatter", "json").stdout or "[]")}
    if node.admin_user not in users:
        ctl(node, "add_user", node.admin_user, stdin=node.admin_password + "\n")
        ctl(node, "set_user_tags", node.admin_user, "administrator")
        ctl(node, "set_permissions", "-p", "/", node.admin_user, ".*", ".*", ".*")
    if "guest" in users:
        ctl(node, "delete_user", "guest")


def start(
    data_dir: str | Path,
    signing_key: str,
    timeout: float = 90.0,
    ports: tuple[int, int, int] | None = None,
) -> BrokerNode:
    """Start a private node under ``data_dir`` and wait until it accepts AMQP connections.

    ``ports`` (AMQP, management, distribution) defaults to free ports. The node name derives from the AMQP port
    and names the node's data, so restarting a stopped node with its data means passing its old ports again:
    ``start(node.data_dir, node.signing_key, ports=(node.amqp_port, node.management_port, node.dist_port))``.
    """
    if shutil.which("rabbitmq-server") is None:
        raise RuntimeError("rabbitmq-server is not installed (scripts/setup.sh installs it)")
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    amqp_port, mgmt_port, dist_port = ports or (free_port(), free_port(), free_port())
    nodename = f"ewms{amqp_port}@localhost"
    conf_dir = data / "conf"
    admin = _admin(data)
    _write_config(conf_dir, amqp_port, mgmt_port, signing_key, admin)
    for sub in ("mnesia", "log"):
        (data / sub).mkdir(exist_ok=True)
    command, extra_env = _tool("rabbitmq-server")
    if not extra_env:  # the server switches to user rabbitmq, which must own and reach its files
        _chown_rabbitmq(data)
    env = dict(
        os.environ,
        **extra_env,
        RABBITMQ_NODENAME=nodename,
        RABBITMQ_NODE_PORT=str(amqp_port),
        RABBITMQ_DIST_PORT=str(dist_port),
        RABBITMQ_MNESIA_BASE=str(data / "mnesia"),
        RABBITMQ_LOG_BASE=str(data / "log"),
        RABBITMQ_CONFIG_FILE=str(conf_dir / "rabbitmq.conf"),
        RABBITMQ_ADVANCED_CONFIG_FILE=str(conf_dir / "advanced.config"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(conf_dir / "enabled_plugins"),
        RABBITMQ_PID_FILE=str(data / "node.pid"),
    )
    proc = spawn([command], env, data / "server.out", cwd=data)
    node = BrokerNode(nodename, amqp_port, mgmt_port, dist_port, str(data), signing_key, proc.pid, *admin)
    atomic_write_text(data / STATE_FILE, json.dumps(asdict(node)), mode=0o600)
    deadline = time.monotonic() + timeout
    LOGGER.info("starting private RabbitMQ node %s on port %d", nodename, amqp_port)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rabbitmq-server exited with {proc.returncode}; see {data / 'server.out'}")
        # await_startup called too early fails at once: poll again
        if port_open(amqp_port) and ctl(node, "await_startup", "--timeout", "60", check=False).returncode == 0:
            _secure_users(node)
            LOGGER.info("private RabbitMQ node %s ready", nodename)
            return node
        time.sleep(0.3)
    stop(node)
    raise TimeoutError(f"RabbitMQ node {nodename} did not open port {amqp_port} within {timeout}s")


def stop(node: BrokerNode, timeout: float = 30.0) -> None:
    """Stop the node cleanly, then make sure its process group is gone."""
    try:
        ctl(node, "stop", check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        LOGGER.warning("rabbitmqctl stop timed out for %s; killing it", node.nodename)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(node.pid)
        try:
            os.killpg(node.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(node.pid)
    LOGGER.info("private RabbitMQ node %s stopped", node.nodename)


def _reap(pid: int) -> None:
    """Collect the exit status of our own child, so that it does not linger as a zombie that signals still reach."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (e.g. the CLI's ``down``) or already collected
        pass


def load(data_dir: str | Path) -> BrokerNode:
    """Read the settings of a node started earlier under ``data_dir``."""
    return BrokerNode(**json.loads((Path(data_dir) / STATE_FILE).read_text()))


def main(argv: list[str] | None = None) -> int:
    """CLI: ``up DATA_DIR [SIGNING_KEY]`` or ``down DATA_DIR``."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if len(args) >= 2 and args[0] == "up":
        key = args[2] if len(args) > 2 else _b64url(os.urandom(32))
        print(json.dumps(asdict(start(args[1], key))))
        return 0
    if len(args) == 2 and args[0] == "down":
        stop(load(args[1]))
        return 0
    print("usage: python -m ewms_dev.broker_node up DATA_DIR [SIGNING_KEY] | down DATA_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
