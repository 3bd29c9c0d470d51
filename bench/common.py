"""Shared pieces of the WMS benchmarks: a WMS in its own process on fresh ports and data dirs, seeded taskforces,
a load generator used for both the REST figures and their driver floors, process probes and the result format."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import math
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from ewms_dev import broker_node, processes
from ewms_dev import mongo_server as embedded
from ewms_dev.factories import WORKER_CONFIG, task_request, taskforce
from ewms_dev.service_env import wms_env
from pilot.processes import TaskProcess
from wms.auth import Role, issue_token

ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = "ewms-bench"
DB_NAME = "ewms"
OWNER = "bench-user"
CLUSTERS = {"alpha": "ap-alpha.bench", "beta": "ap-beta.bench", "gamma": "ap-gamma.bench", "delta": "ap-delta.bench"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
WMS_START_TIMEOUT = 120.0  # includes building the indexes over seeded taskforces
# every request that failed in any run_load of this process: a benchmark that saw one misses its target
FAILED_REQUESTS: collections.Counter[str] = collections.Counter()

# ---- result format -------------------------------------------------------------------------------------------------


def emit(
    bench_id: str,
    figures: dict[str, Any],
    floor: dict[str, Any],
    target: str,
    met: bool,
    notes: str = "",
    ratio: dict[str, float] | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Print one benchmark's result as the single JSON object the runner collects.

    ``ratio`` defaults to figure / floor for every figure that has a floor under the same name. Requests that failed
    in this process (:data:`FAILED_REQUESTS`) make the result MISSED, with their count among the figures.
    """
    if ratio is None:
        ratio = {k: round(figures[k] / v, 3) for k, v in floor.items() if k in figures and v}
    failed = sum(FAILED_REQUESTS.values())
    if failed:
        figures = {**figures, "failed requests": failed}
        samples = "; ".join(f"{n} x {text}" for text, n in FAILED_REQUESTS.most_common(3))
        notes = f"MISSED: {failed} request(s) failed ({samples}). {notes}"
        met = False
    result = {
        "id": bench_id,
        "figures": figures,
        "floor": floor,
        "ratio": ratio,
        "target": target,
        "met": bool(met),
        "notes": notes,
        "details": details or {},
    }
    print(json.dumps(result, indent=2))


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the result)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- process probes ------------------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def broker_pid(node: broker_node.BrokerNode) -> int:
    """The pid of a private broker node's Erlang VM (which does the broker's work)."""
    return int(Path(node.data_dir, "node.pid").read_text().strip())


def _stat_fields(process: Path) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (``fields[11:15]``: utime, stime, cutime, cstime)."""
    return (process / "stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = _stat_fields(Path(f"/proc/{pid}"))
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_by_kind(kinds: dict[str, str]) -> dict[str, float]:
    """CPU seconds used so far by every running process whose command line holds one of ``kinds``' values (the
    first that matches names it), their reaped children included (a pilot's task processes)."""
    used = dict.fromkeys(kinds, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = _stat_fields(entry)
        except OSError:  # exited meanwhile
            continue
        kind = next((name for name, needle in kinds.items() if needle in command), None)
        if kind is not None:
            used[kind] += sum(int(f) for f in fields[11:15]) / CLK_TCK
    return used


# ---- load generation -----------------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class LoadResult:
    """What one load run measured."""

    ops: int
    seconds: float
    latencies: list[float] = field(repr=False)
    errors: int
    client_cpu_s: float
    server_cpu_s: dict[str, float]
    error_samples: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Rate, latency percentiles (ms) and CPU use of client and server processes."""
        lat = sorted(self.latencies)
        return {
            "ops": self.ops,
            "seconds": round(self.seconds, 2),
            "rate": round(self.ops / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(lat, 50) * 1000, 2),
            "p99_ms": round(percentile(lat, 99) * 1000, 2),
            "errors": self.errors,
            "error_samples": dict(sorted(self.error_samples.items(), key=lambda kv: -kv[1])[:5]),
            "client_cpu_share": round(self.client_cpu_s / self.seconds, 2) if self.seconds else 0.0,
            "server_cpu_share": {k: round(v / self.seconds, 2) for k, v in self.server_cpu_s.items()},
            # CPU per call barely depends on what else runs on the machine, unlike rates and latencies
            "cpu_ms_per_op": {
                k: round(v / self.ops * 1000, 3) if self.ops else None
                for k, v in {"client": self.client_cpu_s, **self.server_cpu_s}.items()
            },
        }


async def run_load(
    op: Callable[[int], Awaitable[object]],
    concurrency: int,
    seconds: float,
    warmup: int = 0,
    max_ops: int | None = None,
    watch: dict[str, int] | None = None,
) -> LoadResult:
    """Run ``op(n)`` from ``concurrency`` workers (each awaiting its previous call) for ``seconds``.

    ``warmup`` calls are made first and not counted. ``max_ops`` bounds the number of calls; ``watch`` maps
    names to pids whose CPU time is measured over the timed window (to see whether client or server is busy).
    Only calls that returned count (``ops``, latencies); a call that raised (``op`` raises on any answer other than
    the expected one) is an error, tallied here and in :data:`FAILED_REQUESTS`.
    """
    counter = iter(range(10**12))
    for _ in range(warmup):
        await op(next(counter))
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    deadline = 0.0

    async def worker() -> None:
        while time.perf_counter() < deadline:
            n = next(counter)
            if max_ops is not None and n >= max_ops + warmup:
                return
            started = time.perf_counter()
            try:
                await op(n)
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:300]] += 1
            else:
                latencies.append(time.perf_counter() - started)

    watch = watch or {}
    cpu_before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    client_before = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    FAILED_REQUESTS.update(errors)
    return LoadResult(
        ops=len(latencies),
        seconds=elapsed,
        latencies=latencies,
        errors=sum(errors.values()),
        client_cpu_s=time.process_time() - client_before,
        server_cpu_s={name: cpu_seconds(pid) - cpu_before[name] for name, pid in watch.items()},
        error_samples=dict(errors),
    )


def server_cpu_ms(summary: dict[str, Any], driver_in_client: bool) -> float:
    """CPU milliseconds per call spent serving it: the watched server processes, plus the bench process when it
    makes the driver calls itself (a floor run). Unlike rates, this hardly moves with other load on the machine."""
    per_op = summary["cpu_ms_per_op"]
    return round(sum(v or 0.0 for k, v in per_op.items() if k != "client" or driver_in_client), 2)


class HTTPFailure(Exception):
    """A response that is not 2xx (its status and the start of its problem details)."""


def check(resp: Any) -> Any:
    """The response (httpx or :class:`LeanHTTP`), if it succeeded; else :class:`HTTPFailure`."""
    if resp.status_code >= 300:
        raise HTTPFailure(f"{resp.status_code}: {resp.text[:240]}")
    return resp


def http_client(url: str, token: str, concurrency: int) -> Any:
    """A pooled httpx client with a bearer token, for the full-stack benchmarks' occasional requests."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=60.0)


@dataclass
class LeanResponse:
    """What :class:`LeanHTTP` read back."""

    status_code: int
    content: bytes
    keep_alive: bool

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.content)


class LeanHTTP:
    """The REST benchmarks' load generator: ``size`` persistent HTTP/1.1 connections, one request at a time each.

    On 2 cores a pooled ``httpx.AsyncClient`` spends more CPU per request than the WMS does serving it, and its pool
    stalls with 64 requests in flight (encode/httpx#3215), so it would mostly measure itself. This client only
    writes the request and reads a ``Content-Length`` body (what tornado sends), on the event loop's streams.
    """

    def __init__(self, url: str, token: str, size: int) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Host": f"{self.host}:{self.port}", "Authorization": f"Bearer {token}"}
        self.size = size
        self._free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self._writers: list[asyncio.StreamWriter] = []

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._writers.append(writer)
        return reader, writer

    async def __aenter__(self) -> LeanHTTP:
        for _ in range(self.size):
            self._free.put_nowait(await self._connect())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for writer in self._writers:
            writer.close()

    async def get(self, path: str, headers: dict[str, str] | None = None) -> LeanResponse:
        """``GET path``."""
        return await self.request("GET", path, None, headers)

    async def post(self, path: str, json_body: Any, headers: dict[str, str] | None = None) -> LeanResponse:
        """``POST path`` with a JSON body."""
        return await self.request("POST", path, json_body, headers)

    async def request(
        self, method: str, path: str, json_body: Any = None, headers: dict[str, str] | None = None
    ) -> LeanResponse:
        """One request on a free connection (a connection the server closed is replaced)."""
        reader, writer = await self._free.get()
        reusable = False
        try:
            resp = await self._exchange(reader, writer, method, path, json_body, headers or {})
            reusable = resp.keep_alive
            return resp
        finally:
            if not reusable:
                writer.close()
                reader, writer = await self._connect()
            self._free.put_nowait((reader, writer))

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        json_body: Any,
        headers: dict[str, str],
    ) -> LeanResponse:
        fields = {**self.headers, **headers}
        payload = b""
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            fields.update({"Content-Type": "application/json", "Content-Length": str(len(payload))})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        writer.write(head.encode() + payload)
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        answer = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        if "content-length" not in answer:
            raise HTTPFailure(f"{status}: no Content-Length (chunked answers are not supported)")
        body = await reader.readexactly(int(answer["content-length"]))
        return LeanResponse(status, body, answer.get("connection", "").lower() != "close")


# ---- documents -----------------------------------------------------------------------------------------------------

BENCH_TASK = {
    "task_image": "/cvmfs/icecube.opensciencegrid.org/containers/bench/task:1.0",
    "task_env": {"MODE": "bench"},
    "n_workers": 4,
}


def two_by_two_request() -> dict[str, Any]:
    """Two tasks chained through a private queue, each at two locations: 4 taskforces, 3 queues."""
    return {
        "public_queue_aliases": ["in", "out"],
        "tasks": [
            task_request(["alpha", "beta"], ["in"], ["mid"], **BENCH_TASK),
            task_request(["alpha", "beta"], ["mid"], ["out"], **BENCH_TASK),
        ],
    }


def _hex_id(prefix: str, epoch: int, rng: random.Random, parts: int) -> str:
    return "-".join([prefix, f"{epoch:x}", *(f"{rng.getrandbits(32):08x}" for _ in range(parts))])


PHASE_MIX = (  # a service that has run for a while: most taskforces are done
    ("condor-complete", 0.50),
    ("condor-submit", 0.40),
    ("pending-starter", 0.05),
    ("condor-rm", 0.05),
)
PHASE_PATHS = {
    "pending-starter": ["pre-mq-activation", "pre-launch", "pending-starter"],
    "condor-submit": ["pre-mq-activation", "pre-launch", "pending-starter", "condor-submit"],
    "condor-rm": ["pre-mq-activation", "pre-launch", "pending-starter", "condor-submit", "pending-stopper",
                  "condor-rm"],
    "condor-complete": ["pre-mq-activation", "pre-launch", "pending-starter", "condor-submit", "pending-stopper",
                        "condor-complete"],
}  # fmt: skip
SOURCES = {
    "pre-mq-activation": "USER",
    "pre-launch": "Workflow MQ Activator",
    "pending-starter": "Taskforce Launch Control",
    "condor-submit": "TMS",
    "pending-stopper": "User",
    "condor-rm": "TMS",
    "condor-complete": "TMS",
}


def taskforce_docs(n: int, owner: str = OWNER, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``n`` stored taskforces as the WMS writes them: a valid TaskforceObject plus its internal counters.

    Four tasks per workflow, schedds round-robin over :data:`CLUSTERS`, phases drawn from :data:`PHASE_MIX`
    (no ``pre-*`` phases, so that the WMS daemons leave the seeded documents alone).
    """
    rng = random.Random(seed)
    locations = list(CLUSTERS)
    phases, weights = [p for p, _ in PHASE_MIX], [w for _, w in PHASE_MIX]
    base = time.time() - 30 * 86400
    workflow_id = task_id = ""
    for i in range(n):
        ts = base + i * 20.0
        if i % 4 == 0:
            workflow_id = _hex_id("WF", int(ts), rng, 1)
        if i % 2 == 0:
            task_id = _hex_id("TK", int(ts), rng, 2)
        location = locations[i % len(locations)]
        phase = rng.choices(phases, weights)[0]
        submitted = phase != "pending-starter"
        cluster_id = 10_000 + i if submitted else None
        n_workers = 1 + i % 50
        log = [
            {"target_phase": p, "timestamp": ts + k, "was_successful": True, "source_event_time": None,
             "source_entity": SOURCES[p], "context": f"bench: {p}"}
            for k, p in enumerate(PHASE_PATHS[phase])
        ]  # fmt: skip
        jel = f"/var/tmp/ewms-tms/job-event-logs/tms-{int(ts) // 86400}.tms.jel" if submitted else None
        yield taskforce(
            _hex_id("TF", int(ts), rng, 3),
            CLUSTERS[location],
            n_workers,
            task_id=task_id,
            workflow_id=workflow_id,
            timestamp=ts,
            priority=50,
            cluster_location=location,
            pilot_config={
                "tag": "latest",
                "image_source": "cvmfs",
                "environment": {
                    "EWMS_PILOT_TASK_IMAGE": "/cvmfs/icecube.opensciencegrid.org/containers/bench/task:1.0",
                    "EWMS_PILOT_TASK_ARGS": "cp {{INFILE}} {{OUTFILE}}",
                    "EWMS_PILOT_TASK_ENV_JSON": '{"MODE": "bench"}',
                },
                "input_files": [],
            },
            worker_config={"condor_requirements": "", **WORKER_CONFIG},
            cluster_id=cluster_id,
            submit_dict={"request_cpus": 1, "request_memory": "512M", "+EWMS_TASKFORCE_UUID": "bench"}
            if submitted
            else {},
            job_event_log_fpath=jel,
            phase=phase,
            phase_change_log=log,
            compound_statuses={"Running": {"Tasking": n_workers}} if phase == "condor-submit" else {},
            owner=owner,
            _submit_failures=0,
            _rm_failures=0,
        )


def check_taskforce_shape(doc: dict[str, Any]) -> None:
    """Validate a generated document against the OpenAPI TaskforceObject (internal ``_`` fields aside)."""
    from wms import schema
    from wms.config import DEFAULT_OPENAPI_PATH

    schema.load(str(DEFAULT_OPENAPI_PATH)).validate_object(
        "TaskforceObject", {k: v for k, v in doc.items() if not k.startswith("_")}
    )


@dataclass
class Seeded:
    """What :func:`seed_taskforces` stored."""

    uuids: list[str]
    workflow_ids: list[str]
    seconds: float


async def seed_taskforces(db: Any, n: int, batch: int = 2000) -> Seeded:
    """Bulk-insert ``n`` generated taskforces into the WMS database through the driver."""
    docs = taskforce_docs(n)
    first = next(docs)
    check_taskforce_shape(first)
    seeded = Seeded([], [], 0.0)
    started = time.perf_counter()
    chunk = [first]
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == batch:
            await _insert(db, chunk, seeded)
            chunk = []
    await _insert(db, chunk, seeded)
    seeded.seconds = time.perf_counter() - started
    return seeded


async def _insert(db: Any, chunk: list[dict[str, Any]], seeded: Seeded) -> None:
    if not chunk:
        return
    await db.taskforces.insert_many(chunk, ordered=False)
    for doc in chunk:
        seeded.uuids.append(doc["taskforce_uuid"])
        if not seeded.workflow_ids or seeded.workflow_ids[-1] != doc["workflow_id"]:
            seeded.workflow_ids.append(doc["workflow_id"])


# ---- a WMS in its own process --------------------------------------------------------------------------------------


def show_logs(work: Path, lines: int = 30) -> None:
    """Copy the end of each server log in ``work`` to stderr (before the directory is removed)."""
    for path in sorted(work.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        log(f"--- last lines of {path.name} ---\n" + "\n".join(tail))


@dataclass
class WMSProcess:
    """A running ``python -m wms`` with its own ``nx-27017`` and private RabbitMQ node."""

    url: str
    pid: int
    mongo: embedded.EmbeddedMongo
    broker: broker_node.BrokerNode
    env: dict[str, str]
    auth_key: str
    work: Path
    seeded: Seeded
    startup_seconds: float  # includes building the indexes over the seeded taskforces

    @property
    def db_name(self) -> str:
        """The WMS's database."""
        return self.env["WMS_DB_NAME"]

    def token(self, role: Role = Role.USER, subject: str = OWNER) -> str:
        """A real signed bearer token the WMS accepts."""
        return issue_token(self.auth_key, subject, role, AUDIENCE)

    def submitters(self, n: int) -> list[dict[str, str]]:
        """``Authorization`` headers of ``n`` distinct users: each submits only its share of the workflows, as many
        users would (the WMS limits active workflows per user)."""
        return [{"Authorization": f"Bearer {self.token(Role.USER, f'submitter-{i:02d}')}"} for i in range(n)]

    def client(self) -> AsyncMongoClient[dict[str, Any]]:
        """A driver client for the WMS's database server, configured as the WMS configures its own."""
        return AsyncMongoClient(self.mongo.uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, tz_aware=False)

    @contextlib.contextmanager
    def another(self, **env_overrides: str) -> Iterator[WMSProcess]:
        """A second ``python -m wms`` on the same database server and broker, with its own REST port."""
        env = {**self.env, "REST_PORT": str(processes.free_port()), **env_overrides}
        proc = processes.start_wms(env, self.work / f"wms-{env['REST_PORT']}.log", WMS_START_TIMEOUT)
        try:
            url = f"http://127.0.0.1:{env['REST_PORT']}"
            yield dataclasses.replace(self, url=url, pid=proc.pid, env=env)
        finally:
            processes.stop(proc.pid, timeout=20)


@contextlib.asynccontextmanager
async def wms_process(seed: int = 0, **env_overrides: str) -> AsyncIterator[WMSProcess]:
    """Start nx-27017 (on disk), a private broker and ``python -m wms``, all on fresh ports in a temp dir.

    ``seed`` taskforces are bulk-inserted before the WMS starts: without the indexes, which the WMS then builds
    at start, the insert is about 2.5 times faster. The WMS keeps no taskforces in memory, so this changes nothing
    it is measured on.
    """
    work = Path(tempfile.mkdtemp(prefix="ewms-bench-"))
    mongo = broker = proc = None
    try:
        mongo = embedded.start(work / "mongo")
        seeded = Seeded([], [], 0.0)
        if seed:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo.uri)
            seeded = await seed_taskforces(client[DB_NAME], seed)
            await client.close()
            log(f"seeded {seed} taskforces in {seeded.seconds:.1f}s")
        broker_key = secrets.token_urlsafe(32)
        broker = broker_node.start(work / "rmq", broker_key)
        auth_key = secrets.token_urlsafe(32)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "BROKER_", "MQS_", "EWMS_"))},
            **wms_env(mongo.uri, broker, auth_key, AUDIENCE, CLUSTERS, processes.free_port()),
            "WMS_DB_NAME": DB_NAME,
            "LOG_LEVEL": "WARNING",
            **env_overrides,
        }
        started = time.perf_counter()
        proc = processes.start_wms(env, work / "wms.log", WMS_START_TIMEOUT)
        startup = time.perf_counter() - started
        url = f"http://127.0.0.1:{env['REST_PORT']}"
        yield WMSProcess(url, proc.pid, mongo, broker, env, auth_key, work, seeded, startup)
    except BaseException:
        show_logs(work)
        raise
    finally:
        if proc is not None:
            processes.stop(proc.pid, timeout=20)
        if broker is not None:
            broker_node.stop(broker)
        if mongo is not None:
            embedded.stop(mongo)
        shutil.rmtree(work, ignore_errors=True)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the context managers, which stop the child processes


def run(
    main: Callable[[], Coroutine[Any, Any, None]], loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
) -> None:
    """Entry point of a benchmark module (SIGTERM, e.g. from the runner's timeout, still cleans up)."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


# ---- the full stack (WMS, TMS with the local backend) --------------------------------------------------------------


@contextlib.contextmanager
def dev_stack(max_local_jobs: int, pilot_command: str | None = None) -> Iterator[Any]:
    """``ewms_dev.devstack.DevStack`` in a temp dir: nx-27017, private broker, WMS and a local-backend TMS.

    ``pilot_command`` replaces the pilot the local backend starts for each job (``TMS_LOCAL_PILOT_COMMAND``,
    which the dev stack passes on to the TMS from this process's environment).
    """
    from ewms_dev.devstack import stack_running

    work = Path(tempfile.mkdtemp(prefix="ewms-bench-stack-"))
    settings = {} if pilot_command is None else {"TMS_LOCAL_PILOT_COMMAND": pilot_command}
    try:
        with stack_running(work, settings, max_local_jobs=max_local_jobs) as stack:
            assert stack.state is not None
            yield stack.state
    except BaseException:
        show_logs(work)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def idle_pilot_command(seconds: int = 900) -> str:
    """A stand-in pilot that runs and reports nothing (so only the benchmark writes pilot statuses)."""
    return f"{shutil.which('sleep') or '/bin/sleep'} {seconds}"


async def start_and_wait(argv: list[str]) -> int:
    """Run ``argv`` (an absolute path first) in its own session with stdin from /dev/null and return its exit code:
    ``os.posix_spawn`` (vfork and exec, no Python in the child) awaited as the pilot awaits its tasks
    (:class:`pilot.processes.TaskProcess`, a pidfd), the cheapest way from an event loop: the process floors' way."""
    stdin = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
    pid = os.posix_spawn(argv[0], argv, os.environ, setsid=True, file_actions=stdin)  # noqa: ASYNC221 (returns at exec)
    return await TaskProcess(pid).wait()


def executable(name: str) -> str:
    """The absolute path of command ``name`` on PATH (what :func:`start_and_wait` needs)."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH")
    return path
