"""``ewms-tms check``: on an access point, with the TMS's own settings, check each thing the TMS needs and say in
plain words what is wrong; a summary table, and exit code 0 (every check passed or was not applicable), 1 (a check
failed) or 2 (the settings do not parse, as for the daemon).

Checks, in order: the log and taskforce directories are writable; the WMS answers the TMS's credentials (and the
token refreshes, for client credentials); the pilot image or command the site is configured for exists; and, on the
``htcondor`` backend, the schedd answers, a submit of one tiny job (the starter's submit description with a sleep of
a few seconds instead of the pilot) succeeds, its job event log appears where the watcher looks and the watcher's
reader reads its events, and ``condor_rm`` through the same backend removes a second job. Jobs the check submitted
are removed before it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from ewms_client import ClientCredentials, RetryPolicy, StaticToken, TokenSource, WMSError
from tms.backends.base import BackendError, JobSpec
from tms.backends.htcondor import HTCondorBackend
from tms.config import TMSConfig
from tms.submit_description import ENV_FILE_NAME, build_submit_dict, taskforce_dir
from tms.watcher.log_reader import READ_ERRORS, LogGone, LogReader
from tms.wms_client import WMSClient

SLEEP_SECONDS = 5  # the tiny job's run time
REMOVED_JOB_SLEEP_SECONDS = 600  # the second job only has to be in the queue when it is removed
SUBMIT_EVENT = 0
CHECK_REASON = "removed by ewms-tms check"
SCHEDD_STEPS = ("schedd answers", "submit a tiny job", "its job event log is read", "condor_rm removes a job")


class Outcome(enum.StrEnum):
    """How one check ended."""

    OK = "ok"
    FAILED = "FAILED"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Result:
    """One row of the summary table."""

    name: str
    outcome: Outcome
    detail: str


class CheckFailed(Exception):
    """A check found a problem; the message says what, in plain words."""


class Checker:
    """Runs every check once; :meth:`run` returns the rows of the summary table."""

    def __init__(self, config: TMSConfig, backend: HTCondorBackend | None, wait: float = 120.0) -> None:
        self.config = config
        self.backend = backend  # None for the local backend: no schedd to check
        self.wait = wait
        self.results: list[Result] = []
        self._submitted: list[int] = []

    async def run(self) -> list[Result]:
        """Every check, then the removal of any job the check left in the queue."""
        await self._step("directories writable", self._directories)
        await self._step("WMS answers the TMS's credentials", lambda: ask_wms(self.config))
        await self._step("pilot available", self._pilot)
        if self.backend is None:
            self._skip(SCHEDD_STEPS, f"backend {self.config.backend}: no schedd")
        elif await self._step(SCHEDD_STEPS[0], self._schedd):
            try:
                await self._schedd_steps(self.backend)
            finally:
                await self._clean_up(self.backend)
        else:
            self._skip(SCHEDD_STEPS[1:], "the schedd does not answer")
        return self.results

    @property
    def failed(self) -> bool:
        """True when some check failed."""
        return any(r.outcome is Outcome.FAILED for r in self.results)

    async def _step(self, name: str, check: Callable[[], Awaitable[str]]) -> bool:
        try:
            detail = await check()
        except (CheckFailed, BackendError, OSError) as exc:
            self.results.append(Result(name, Outcome.FAILED, str(exc) or type(exc).__name__))
            return False
        self.results.append(Result(name, Outcome.OK, detail))
        return True

    def _skip(self, names: tuple[str, ...], why: str) -> None:
        self.results += [Result(name, Outcome.SKIPPED, why) for name in names]

    # ---- directories, WMS, pilot -------------------------------------------------------------------------------

    async def _directories(self) -> str:
        dirs = [self.config.job_event_log_dir, taskforce_dir(self.config, "check-probe")]
        if self.config.backend == "local":
            dirs.append(self.config.state_dir)
        for path in dirs:
            _writable(path)
        shutil.rmtree(dirs[1], ignore_errors=True)
        return ", ".join(str(p) for p in dirs)

    async def _pilot(self) -> str:
        config = self.config
        if config.backend == "local":
            command = config.local_pilot_command or (sys.executable,)
            return _command_exists(command[0], "TMS_LOCAL_PILOT_COMMAND")
        if config.pilot_launch == "executable":
            return _command_exists((config.pilot_command.split() or [""])[0], "TMS_PILOT_COMMAND")
        image_dir = Path(config.pilot_image_base)
        tags = sorted(p.name.split(":", 1)[1] for p in image_dir.parent.glob(f"{image_dir.name}:*"))
        if not tags:
            raise CheckFailed(
                f"no pilot image {image_dir}:<tag> on this machine (TMS_PILOT_IMAGE_BASE); is CVMFS mounted here?"
            )
        return f"{image_dir} tags: {', '.join(tags[:5])}{' ...' if len(tags) > 5 else ''}"

    # ---- schedd ------------------------------------------------------------------------------------------------

    async def _schedd(self) -> str:
        assert self.backend is not None
        try:
            schedd = await asyncio.to_thread(self.backend.schedd)
        except BackendError as exc:
            raise CheckFailed(f"{exc} (is HTCondor installed and the schedd running on this machine?)") from exc
        return f"{type(schedd).__name__} for {self.config.schedd}"

    async def _schedd_steps(self, backend: HTCondorBackend) -> None:
        if not await self._step(SCHEDD_STEPS[1], lambda: self._submit(backend)):
            self._skip(SCHEDD_STEPS[2:], "the submit failed")
            return
        await self._step(SCHEDD_STEPS[2], lambda: self._read_log(backend.job_event_log_path(), self._submitted[0]))
        await self._step(SCHEDD_STEPS[3], lambda: self._remove(backend))

    def _job_spec(self, backend: HTCondorBackend, sleep: int) -> JobSpec:
        """The starter's submit description for a one-worker taskforce, running ``sleep`` instead of the pilot."""
        uuid = f"ewms-check-{secrets.token_hex(4)}"
        config = self.config
        tf_dir = taskforce_dir(config, uuid)
        tf_dir.mkdir(parents=True, exist_ok=True)
        env_file = tf_dir / ENV_FILE_NAME
        env_file.write_text("# written by ewms-tms check: no pilot runs\n")
        worker = {"worker_memory": "100M", "worker_disk": "10M", "n_cores": 1, "max_worker_runtime": 900,
                  "priority": 1, "do_transfer_worker_stdouterr": True}  # fmt: skip
        submit = build_submit_dict(config, {"taskforce_uuid": uuid, "n_workers": 1, "worker_config": worker},
                                   backend.job_event_log_path(), env_file)  # fmt: skip
        for key in ("container_image", "+should_transfer_container"):
            submit.pop(key, None)
        submit.update({"universe": "vanilla", "executable": "/bin/sleep", "arguments": str(sleep)})
        return JobSpec(taskforce_uuid=uuid, submit_dict=submit, pilot_env={}, taskforce_dir=tf_dir)

    async def _submit(self, backend: HTCondorBackend) -> str:
        spec = self._job_spec(backend, SLEEP_SECONDS)
        submitted = await backend.submit(spec, 1)
        self._submitted.append(submitted.cluster_id)
        return f"cluster {submitted.cluster_id} ({spec.taskforce_uuid})"

    async def _read_log(self, log: Path, cluster: int) -> str:
        """Read the log with the watcher's reader until the cluster's submit event is there (and, within the
        wait, its end: informational, a busy pool may not run it that soon)."""
        reader = LogReader(log)
        seen: list[str] = []
        deadline = time.monotonic() + self.wait
        try:
            while time.monotonic() < deadline:
                with contextlib.suppress(LogGone):
                    seen += [str(e.type.name) for e in reader.read(100_000) if e.cluster == cluster]
                if seen and seen[-1] in ("JOB_TERMINATED", "JOB_ABORTED"):
                    break
                await asyncio.sleep(0.5)
        except READ_ERRORS as exc:
            raise CheckFailed(f"the watcher cannot read {log}: {type(exc).__name__}: {exc}") from exc
        finally:
            reader.close()
        if not await asyncio.to_thread(log.exists):
            raise CheckFailed(f"no job event log at {log} (the watcher looks in JOB_EVENT_LOG_DIR)")
        if not seen:
            raise CheckFailed(f"{log} has no event of cluster {cluster} after {self.wait:.0f}s")
        return f"{log}: {', '.join(seen)}"

    async def _remove(self, backend: HTCondorBackend) -> str:
        spec = self._job_spec(backend, REMOVED_JOB_SLEEP_SECONDS)
        submitted = await backend.submit(spec, 1)
        removed = await backend.remove(submitted.cluster_id, CHECK_REASON)
        if removed < 1:
            self._submitted.append(submitted.cluster_id)  # try again at the end
            raise CheckFailed(f"condor_rm of cluster {submitted.cluster_id} removed no job")
        return f"cluster {submitted.cluster_id}: {removed} removed"

    async def _clean_up(self, backend: HTCondorBackend) -> None:
        for cluster in self._submitted:
            with contextlib.suppress(BackendError):
                await backend.remove(cluster, CHECK_REASON)


async def ask_wms(config: TMSConfig) -> str:
    """One TMS call with the TMS's credentials (the starter's first call), and a forced token refresh when they are
    client credentials. The one place the check talks to the WMS."""
    tokens: TokenSource = (
        StaticToken(config.ewms_token)
        if config.ewms_token
        else ClientCredentials(config.ewms_token_url, config.ewms_client_id, config.ewms_client_secret)
    )
    wms = WMSClient(config.ewms_address, tokens, timeout=config.http_timeout, policy=RetryPolicy(0))
    try:
        await wms.get_pending_starter(config.schedd)
        if not tokens.refreshable:
            return f"{config.ewms_address} (static token: nothing to refresh)"
        async with httpx.AsyncClient(timeout=config.http_timeout) as http:
            await tokens.token(http, rejected=await tokens.token(http))  # a new one, as after a 401
        await wms.get_pending_starter(config.schedd)
        return f"{config.ewms_address} (token refreshed from {config.ewms_token_url})"
    except WMSError as exc:
        if exc.is_unavailable:
            raise CheckFailed(f"the WMS at {config.ewms_address} does not answer: {exc}") from exc
        if exc.status in (401, 403):
            raise CheckFailed(f"the WMS refused the TMS's credentials: {exc}") from exc
        raise CheckFailed(str(exc)) from exc
    except httpx.HTTPError as exc:
        raise CheckFailed(f"the WMS at {config.ewms_address} does not answer: {exc}") from exc
    finally:
        await wms.close()


def _writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ewms-check-"):
            pass
    except OSError as exc:
        raise CheckFailed(f"{path} is not writable: {exc.strerror or exc}") from exc


def _command_exists(command: str, what: str) -> str:
    found = shutil.which(command)
    if found is None:
        raise CheckFailed(f"{what} {command!r} is not found on this machine")
    return found


def table(results: list[Result]) -> str:
    """The summary table: one row per check."""
    width = max(len(r.name) for r in results)
    lines = [f"{'CHECK':<{width}}  {'RESULT':<7}  DETAIL"]
    lines += [f"{r.name:<{width}}  {r.outcome.value:<7}  {r.detail}" for r in results]
    return "\n".join(lines)


async def check(config: TMSConfig, backend: HTCondorBackend | None, wait: float) -> int:
    """Run the checks (waiting up to ``wait`` s for the tiny job's events), print the table; the exit code (0 all
    passed, 1 a check failed)."""
    checker = Checker(config, backend, wait)
    results = await checker.run()
    print(table(results))
    print("\nFAILED: fix the rows marked FAILED" if checker.failed else "\nall checks passed", flush=True)
    return 1 if checker.failed else 0
