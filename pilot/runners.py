"""Task runners: build the command line for one task run and execute it with a timeout.

``process`` runs the task on the host; ``docker`` and ``apptainer`` run it in a container with the task's I/O
directory and the data hub bind-mounted under ``/ewms-pilot-data``. No runner uses a shell: the task arguments are
split once with :func:`shlex.split`, placeholders are then substituted inside each word, and the words are exec'd
directly, so a substituted path can never be re-parsed as shell syntax.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pilot.config import PilotConfig, TaskSpec, is_apptainer_sandbox, is_local_directory
from pilot.errors import TaskExitError, TaskLaunchError, TaskTimeoutError
from pilot.processes import spawn

LOGGER = logging.getLogger(__name__)

CONTAINER_DATA_DIR = "/ewms-pilot-data"
CONTAINER_TASK_IO = f"{CONTAINER_DATA_DIR}/task-io"
CONTAINER_DATA_HUB = f"{CONTAINER_DATA_DIR}/data-hub"
PLACEHOLDERS = {
    "INFILE": ("{{INFILE}}", "{{IN_FILE}}"),
    "OUTFILE": ("{{OUTFILE}}", "{{OUT_FILE}}"),
    "DATA_HUB": ("{{DATA_HUB}}", "{{DATAHUB}}"),
}
TASK_ENV_NAMES = {"INFILE": "EWMS_TASK_INFILE", "OUTFILE": "EWMS_TASK_OUTFILE", "DATA_HUB": "EWMS_TASK_DATA_HUB_DIR"}
# the pilot's own settings (queue tokens among them) never reach a task
PRIVATE_ENV_PREFIXES = ("EWMS_PILOT_", "_EWMS_PILOT_")
STDERR_TAIL_LINES = 5
STDERR_TAIL_CHARS = 800


@dataclass(frozen=True)
class TaskFiles:
    """Host paths for one run: the data hub, captured stderr (and stdout, when kept), the event's I/O files.

    ``task_io`` is the event's I/O directory (mounted at ``/ewms-pilot-data/task-io`` in containers); the init task
    has none.
    """

    data_hub: Path
    stderr: Path
    stdout: Path | None = None  # None: discarded
    task_io: Path | None = None
    infile: Path | None = None
    outfile: Path | None = None


@dataclass(frozen=True)
class CommandLine:
    """An argv to exec (never through a shell) and the environment of the launched process."""

    argv: tuple[str, ...]
    env: Mapping[str, str]

    def __str__(self) -> str:
        return shlex.join(self.argv)


def substitute(words: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Replace ``{{INFILE}}``-style placeholders inside each word with ``values[INFILE]`` etc."""
    out = []
    for word in words:
        for key, value in values.items():
            for placeholder in PLACEHOLDERS[key]:
                word = word.replace(placeholder, value)
        out.append(word)
    return out


def host_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The pilot's environment without its own (secret-bearing) ``EWMS_PILOT_*`` settings."""
    return {k: v for k, v in environ.items() if not k.startswith(PRIVATE_ENV_PREFIXES)}


class Runner(ABC):
    """Builds and prepares command lines for one platform."""

    platform: ClassVar[str]
    binary: ClassVar[str] = ""  # the container runtime's command, if any

    def __init__(self, config: PilotConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        self.host_env = host_environment(self.environ)

    def check_available(self) -> None:
        """Raise :class:`TaskLaunchError` when the platform's command is not on PATH."""
        if self.binary and shutil.which(self.binary, path=self.environ.get("PATH")) is None:
            raise TaskLaunchError(
                f"the {self.platform} runner needs the '{self.binary}' command, which is not on PATH "
                f"({self.environ.get('PATH', '')}); install it or set _EWMS_PILOT_CONTAINER_PLATFORM"
            )

    async def prepare_image(self, image: str) -> str:
        """Make the image runnable (pull, build) once; return the reference to run."""
        return image

    @abstractmethod
    def build(self, spec: TaskSpec, image: str, files: TaskFiles) -> CommandLine:
        """The command line for one run of ``spec``."""

    def _task_values(self, files: TaskFiles, in_container: bool) -> dict[str, str]:
        """Placeholder values as the task sees them (host paths, or paths inside the container)."""
        values = {"DATA_HUB": CONTAINER_DATA_HUB if in_container else str(files.data_hub)}
        for key, path in (("INFILE", files.infile), ("OUTFILE", files.outfile)):
            if path is not None:
                values[key] = f"{CONTAINER_TASK_IO}/{path.name}" if in_container else str(path)
        return values

    def _task_env(self, spec: TaskSpec, values: Mapping[str, str]) -> dict[str, str]:
        env = dict(spec.env)
        env.update({TASK_ENV_NAMES[key]: value for key, value in values.items()})
        return env


class ProcessRunner(Runner):
    """Runs the task as a host subprocess; an image that is a local directory (e.g. a venv) puts its bin/ first
    on PATH."""

    platform = "process"

    def __init__(self, config: PilotConfig, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(config, environ)
        self._image_envs: dict[str, dict[str, str]] = {}

    def build(self, spec: TaskSpec, image: str, files: TaskFiles) -> CommandLine:
        values = self._task_values(files, in_container=False)
        env = {**self._image_env(image), **self._task_env(spec, values)}
        return CommandLine(tuple(substitute(spec.argv_template, values)), env)

    def _image_env(self, image: str) -> dict[str, str]:
        """The host environment, with a local environment's bin/ first on PATH (computed once per image)."""
        if image in self._image_envs:
            return self._image_envs[image]
        env = self._image_envs[image] = dict(self.host_env)
        if image:
            env_bin = Path(image).resolve() / "bin"
            if env_bin.is_dir():
                env["PATH"] = os.pathsep.join([str(env_bin), *filter(None, [env.get("PATH", os.defpath)])])
                if (env_bin.parent / "pyvenv.cfg").is_file():
                    env["VIRTUAL_ENV"] = str(env_bin.parent)
        return env


class _ContainerRunner(Runner):
    def _mounts(self, files: TaskFiles) -> list[tuple[str, str, bool]]:
        """(host path, container path, read-only) for every bind mount of a run."""
        mounts = []
        if files.task_io is not None:
            mounts.append((str(files.task_io), CONTAINER_TASK_IO, False))
        mounts.append((str(files.data_hub), CONTAINER_DATA_HUB, False))
        mounts.extend((d, d, True) for d in self.config.external_directories)
        return mounts

    async def _run_quietly(self, argv: Sequence[str]) -> tuple[int, str]:
        """Run a short helper command (pull, build); return its exit code and the tail of its output."""
        LOGGER.info("running: %s", shlex.join(argv))
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.host_env,
        )
        out, _ = await proc.communicate()
        return proc.returncode or 0, _tail(out.decode(errors="replace"))


class DockerRunner(_ContainerRunner):
    """``docker run --rm`` with bind mounts and ``--env``; the image is pulled once when not present."""

    platform = "docker"
    binary = "docker"

    async def prepare_image(self, image: str) -> str:
        code, _ = await self._run_quietly([self.binary, "image", "inspect", image])
        if code != 0:
            code, output = await self._run_quietly([self.binary, "pull", image])
            if code != 0:
                raise TaskLaunchError(f"docker pull {image} failed (exit code {code}): {output}")
        return image

    def build(self, spec: TaskSpec, image: str, files: TaskFiles) -> CommandLine:
        values = self._task_values(files, in_container=True)
        argv = [self.binary, "run", "--rm"]
        if self.config.docker_shm_size:
            argv.append(f"--shm-size={self.config.docker_shm_size}")
        for source, target, readonly in self._mounts(files):
            argv += ["--mount", f"type=bind,source={source},target={target}" + (",readonly" if readonly else "")]
        for name, value in self._task_env(spec, values).items():
            argv += ["--env", f"{name}={value}"]
        argv += [image, *substitute(spec.argv_template, values)]
        return CommandLine(tuple(argv), self.host_env)


class ApptainerRunner(_ContainerRunner):
    """``apptainer run --containall --no-eval`` with bind mounts.

    The task's environment goes through ``APPTAINERENV_<NAME>`` variables (passed in even with ``--containall``)
    rather than ``--env``, whose comma-separated syntax would split values holding commas.
    """

    platform = "apptainer"
    binary = "apptainer"

    async def prepare_image(self, image: str) -> str:
        if is_local_directory(image):
            return image
        if self.config.apptainer_image_directory_must_be_present:
            raise TaskLaunchError(
                f"apptainer image {image!r} is not a sandbox directory; set "
                "_EWMS_PILOT_APPTAINER_IMAGE_DIRECTORY_MUST_BE_PRESENT=false to build one"
            )
        digest = hashlib.sha256(image.encode()).hexdigest()[:16]
        sandbox = self.config.apptainer_build_workdir / f"ewms-apptainer-sandbox-{digest}"
        if not is_apptainer_sandbox(str(sandbox)):
            argv = [self.binary, "build", "--fix-perms", "--sandbox", str(sandbox), image]
            code, output = await self._run_quietly(argv)
            if code != 0:
                raise TaskLaunchError(f"apptainer build of {image} failed (exit code {code}): {output}")
        return str(sandbox)

    def build(self, spec: TaskSpec, image: str, files: TaskFiles) -> CommandLine:
        values = self._task_values(files, in_container=True)
        argv = [self.binary, "run", "--containall", "--no-eval"]
        for source, target, readonly in self._mounts(files):
            argv += ["--mount", f"type=bind,source={source},destination={target}" + (",ro" if readonly else "")]
        argv += [image, *substitute(spec.argv_template, values)]
        env = {**self.host_env, **{f"APPTAINERENV_{k}": v for k, v in self._task_env(spec, values).items()}}
        return CommandLine(tuple(argv), env)


RUNNERS: dict[str, type[Runner]] = {r.platform: r for r in (ProcessRunner, DockerRunner, ApptainerRunner)}


def make_runner(config: PilotConfig, environ: Mapping[str, str] | None = None) -> Runner:
    """The runner for ``config.platform``."""
    return RUNNERS[config.platform](config, environ)


def _tail(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-STDERR_TAIL_LINES:])[-STDERR_TAIL_CHARS:]


def _read_tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4 * STDERR_TAIL_CHARS))
            return _tail(f.read().decode(errors="replace"))
    except OSError:
        return ""


async def execute(command: CommandLine, files: TaskFiles, time_limit: float | None) -> None:
    """Run ``command`` with its output captured to ``files``; raise a TaskError kind when it fails."""
    try:
        proc = spawn(command.argv, command.env, files.stdout, files.stderr)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.filename in (str(files.stdout), str(files.stderr)):
            raise TaskLaunchError(f"cannot create the task's output file {exc.filename}: {reason}") from exc
        raise TaskLaunchError(f"cannot start task command {command.argv[0]!r}: {reason}") from exc
    try:
        if time_limit is None:  # no timer to arm and disarm per event
            code = await proc.wait()
        else:
            async with asyncio.timeout(time_limit):
                code = await proc.wait()
    except TimeoutError:
        await proc.terminate()
        tail = _read_tail(files.stderr)
        raise TaskTimeoutError(f"task timed out after {time_limit:g}s", stderr_tail=tail) from None
    except asyncio.CancelledError:
        await proc.terminate()
        raise
    if code != 0:
        how = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
        tail = _read_tail(files.stderr)
        raise TaskExitError(f"task failed ({how})" + (f": {tail}" if tail else ""), exit_code=code, stderr_tail=tail)


def dump_output(files: TaskFiles, label: str) -> None:
    """Log the task's captured stdout and stderr (``EWMS_PILOT_DUMP_TASK_OUTPUT``)."""
    for name, path in (("stdout", files.stdout), ("stderr", files.stderr)):
        if path is None:
            continue
        try:
            text = path.read_text(errors="replace").rstrip()
        except OSError:
            continue
        if text:
            LOGGER.info("%s %s:\n%s", label, name, text)
