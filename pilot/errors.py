"""Errors the pilot raises; a task error's class name is its *kind* (what ``EWMS_PILOT_OKAY_ERRORS`` lists)."""

from __future__ import annotations

# the environment contract is violated (missing, malformed or unsafe values): the one settings error
from ewms_settings import ConfigError as ConfigError


class PilotError(Exception):
    """Base class of every error raised by the pilot on purpose."""


class BrokerError(PilotError):
    """The broker refused us (authentication, permissions, queue settings) or stayed unreachable."""


class QueuesRetiredError(BrokerError):
    """The queues' vhost no longer exists: the WMS retired them when their workflow ended; nothing is left to do."""


class QueueGoneError(BrokerError):
    """A queue the pilot uses was deleted while it ran: its link found it gone when reconnecting (and did not
    declare it again, which would have published into, or waited on, a queue nobody reads or fills)."""


class InitTaskError(PilotError):
    """The init task failed; the pilot stops before consuming anything."""


class OutputUnroutableError(PilotError):
    """The broker returned a published output (or failed event) as unroutable: its queue no longer exists."""


class TaskError(PilotError):
    """One task (one event) failed; the event goes to the failed-events queue, or is nacked and redelivered.

    ``exit_code`` (negative: killed by that signal) and ``stderr_tail`` are set when the task ran.
    """

    def __init__(self, message: str, *, exit_code: int | None = None, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail

    @property
    def kind(self) -> str:
        """The name listed in ``EWMS_PILOT_OKAY_ERRORS`` to tolerate this failure."""
        return type(self).__name__


class TaskExitError(TaskError):
    """The task exited with a non-zero code (or was killed by a signal)."""


class TaskTimeoutError(TaskError):
    """The task ran longer than ``EWMS_PILOT_TASK_TIMEOUT``."""


class TaskLaunchError(TaskError):
    """The task could not be started (missing executable or container runtime)."""


class TaskInputError(TaskError):
    """The event could not be decoded or written to the task's input file."""


class TaskOutputError(TaskError):
    """The task's output file could not be read or encoded (e.g. invalid JSON)."""


TASK_ERROR_KINDS: frozenset[str] = frozenset(
    cls.__name__ for cls in (TaskExitError, TaskTimeoutError, TaskLaunchError, TaskInputError, TaskOutputError)
)
