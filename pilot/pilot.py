"""The pilot's lifecycle: prepare, init task, consume events and run one task per event, then drain and stop.

Per event: decode the envelope, write the input file, run the task, read the output file, publish it to every
output queue and wait for the broker's confirms, and only then ack the input. A task that writes no output is
acked with nothing sent. A failed task's event is published, with its error, to the failed-events queue and then
acked (without a failed-events queue: nacked and requeued); it is counted, and the pilot stops only by its failure
rule. An output the broker returns as unroutable (its queue is gone) stops the pilot; the input is not acked.
Delivery is at-least-once: an event whose ack is lost (connection drop after the output was confirmed) is
redelivered and its output may be sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import shutil
import signal
import time
import traceback
import uuid
from collections import deque
from pathlib import Path

from ewms_wire.chirp import PilotStatus
from pilot.config import PilotConfig
from pilot.errors import (
    BrokerError,
    InitTaskError,
    OutputUnroutableError,
    PilotError,
    QueueGoneError,
    QueuesRetiredError,
    TaskError,
    TaskInputError,
)
from pilot.events_io import decode_event, encode_event, read_outfile, write_infile
from pilot.failed_events import failed_event_body, pilot_identity
from pilot.processes import keep_descriptors_from_tasks
from pilot.queues import Delivery, InputLink, LinkLostError, OutputLink
from pilot.reporting import StatusReporter
from pilot.runners import Runner, TaskFiles, dump_output, execute
from pilot.tokens import TokenSource, make_token_source

LOGGER = logging.getLogger(__name__)

PUBLISH_RETRY_PAUSE = 0.5


class StopReason(enum.Enum):
    """Why the pilot stopped listening."""

    IDLE = "the input queues went quiet"
    FAILURES = "too many failed tasks"
    SIGNAL = "a termination signal"
    BROKER = "the broker became unreachable"
    QUEUE_GONE = "a queue the pilot uses is gone"
    RETIRED = "its queues were retired (their workflow ended)"


class _Abandoned(Exception):
    """The event's input connection dropped before it could be acked; the broker redelivers it."""


class Pilot:
    """Runs one pilot from ``Started`` to ``Done`` (exit code 0) or ``FatalError`` (non-zero)."""

    def __init__(self, config: PilotConfig, reporter: StatusReporter, runner: Runner) -> None:
        self.config = config
        self.reporter = reporter
        self.runner = runner
        self._inputs: list[InputLink] = []
        self._outputs: list[OutputLink] = []
        self._failed_link: OutputLink | None = None
        self._token_source: TokenSource | None = make_token_source(config)
        self._identity = pilot_identity(config.reporting)
        self._slots = asyncio.Semaphore(config.max_concurrent_tasks)
        # one reusable I/O directory per task slot: no mkdir/rmdir per event (slow on some file systems)
        self._free_dirs = [config.data_dir / f"task-io-{i}" for i in range(config.max_concurrent_tasks)]
        self._tasks: dict[asyncio.Task[None], Delivery] = {}
        self._wake = asyncio.Event()  # the idle wait must look again: a stop request, or the first event
        self._last_activity = 0.0  # time.monotonic() of the last event received or task ended
        self._stop: StopReason | None = None
        self._stop_detail = ""
        self._listening = False
        self._received_any = False
        self._counted_failures = 0
        self._recent_failures: deque[bool] = deque(maxlen=config.failure_window)  # finished tasks: failed?
        self._task_image = ""
        self._init_image = ""
        self._main: asyncio.Task[None] | None = None
        self._signal_exit_code = 0
        self._signal_detail = ""

    async def run(self) -> int:
        """Run the whole lifecycle; return the process exit code."""
        self.reporter.set_status(PilotStatus.STARTED)
        self._log_settings()
        keep_descriptors_from_tasks()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        self._main = asyncio.ensure_future(self._run())
        error, trace = "", ""
        try:
            await self._main
        except asyncio.CancelledError:
            error = self._signal_detail or "pilot cancelled"
        except PilotError as exc:
            error = str(exc)
        except Exception as exc:  # a bug: report it with its traceback rather than die silently
            LOGGER.exception("unexpected error")
            error, trace = f"unexpected error: {exc!r}", traceback.format_exc()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self._shutdown()
        if not error:
            self.reporter.set_status(PilotStatus.DONE)
            return 0
        if self._stop is StopReason.SIGNAL and error == self._signal_detail:
            # a requested stop (the TMS removing the job) is not a task failure: report no error for it
            LOGGER.info("%s; unfinished events were returned to their queues", error)
            return self._signal_exit_code
        self.reporter.fatal(error, trace)
        if self._stop is StopReason.FAILURES and self.config.quarantine_time:
            LOGGER.info("quarantine: sleeping %gs before exiting", self.config.quarantine_time)
            await asyncio.sleep(self.config.quarantine_time)
        return self._signal_exit_code or 1

    # -- phases ----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        await self._prepare()
        if self.config.init is not None:
            await self._run_init()
        try:
            await self._open_links()
        except QueuesRetiredError as exc:  # e.g. the job waited in the scheduler until its workflow had ended
            LOGGER.warning("nothing to do: %s (had the vhost never existed, the broker address would be wrong)", exc)
            return
        self.reporter.set_status(PilotStatus.AWAITING_FIRST_MESSAGE)
        self._listening = True
        for link in self._inputs:
            await link.start_consuming()
        await self._listen()
        self._listening = False
        LOGGER.info("stopped listening: %s", self._stop.value if self._stop else "")
        if self._stop is StopReason.RETIRED:
            LOGGER.info("%s; unfinished tasks are cancelled (their events went with the queues)", self._stop_detail)
        for link in self._inputs:
            await link.stop_consuming()
        self.reporter.set_status(PilotStatus.PENDING_REMAINING_TASKS)
        if self._stop in (StopReason.SIGNAL, StopReason.BROKER, StopReason.QUEUE_GONE, StopReason.RETIRED):
            for task in self._tasks:
                task.cancel()
        if self._tasks:
            LOGGER.info("waiting for %d remaining task(s)", len(self._tasks))
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._stop not in (StopReason.IDLE, StopReason.RETIRED):
            raise PilotError(self._stop_detail)

    async def _prepare(self) -> None:
        self.runner.check_available()
        self.config.data_hub.mkdir(parents=True, exist_ok=True)
        for slot_dir in self._free_dirs:
            shutil.rmtree(slot_dir, ignore_errors=True)  # left over by an earlier pilot in this directory
            slot_dir.mkdir()
        self._task_image = await self.runner.prepare_image(self.config.task.image)
        if self.config.init is not None:
            init_image = self.config.init.image or self.config.task.image
            self._init_image = await self.runner.prepare_image(init_image)

    async def _run_init(self) -> None:
        assert self.config.init is not None
        self.reporter.set_status(PilotStatus.RUNNING_INIT_COMMAND)
        run_dir = self.config.data_dir / "init"
        run_dir.mkdir(parents=True, exist_ok=True)
        files = TaskFiles(self.config.data_hub, stderr=run_dir / "stderr.txt", stdout=run_dir / "stdout.txt")
        command = self.runner.build(self.config.init, self._init_image, files)
        LOGGER.info("running the init task: %s", command)
        try:
            await execute(command, files, self.config.init.timeout)
        except TaskError as exc:
            raise InitTaskError(f"init {exc}") from exc
        finally:
            if self.config.dump_task_output:
                dump_output(files, "init task")
        LOGGER.info("init task succeeded")

    @property
    def _failed_links(self) -> list[OutputLink]:
        return [self._failed_link] if self._failed_link is not None else []

    async def _open_links(self) -> None:
        for spec in self.config.outgoing:
            output = OutputLink(spec, self.config.reconnect_timeout, self._on_broker_fatal, self._token_source)
            self._outputs.append(output)
            await output.open()
        if self.config.failed_events is not None:
            self._failed_link = OutputLink(
                self.config.failed_events, self.config.reconnect_timeout, self._on_broker_fatal, self._token_source
            )
            await self._failed_link.open()
        for spec in self.config.incoming:
            link = InputLink(
                spec,
                self.config.reconnect_timeout,
                self._on_broker_fatal,
                self._token_source,
                prefetch=self.config.max_concurrent_tasks,
                on_delivery=self._on_delivery,
                on_lost=self._on_input_lost,
            )
            self._inputs.append(link)
            await link.open()

    async def _listen(self) -> None:
        """Wait until a stop is requested or, while a task slot is free, the inputs stay quiet (no event arrives,
        no task ends) for the idle timeout."""
        self._last_activity = time.monotonic()
        while self._stop is None:
            timeout = self.config.timeout_incoming if self._received_any else self.config.timeout_first_message
            quiet = time.monotonic() - self._last_activity
            if quiet < timeout:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout - quiet):
                        await self._wake.wait()
                continue
            if self._slots.locked() or not all(link.is_open for link in self._inputs):
                self._last_activity = time.monotonic()  # busy slots or a reconnecting input: not a quiet queue
                continue
            first = "first " if not self._received_any else ""
            LOGGER.info("no %sevent for %gs", first, timeout)
            self._request_stop(StopReason.IDLE, "")

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(link.close() for link in [*self._inputs, *self._outputs, *self._failed_links]))

    # -- events ----------------------------------------------------------------------------------------------

    def _on_delivery(self, delivery: Delivery) -> None:
        if not self._listening:
            delivery.nack()  # arrived while the consumer was being cancelled
            return
        if not self._received_any:
            self._received_any = True
            self.reporter.set_status(PilotStatus.TASKING)
            self._wake.set()  # the idle timeout is the shorter one from now on
        task = asyncio.ensure_future(self._handle(delivery))
        self._tasks[task] = delivery
        task.add_done_callback(self._task_done)
        self._last_activity = time.monotonic()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._last_activity = time.monotonic()
        if not task.cancelled() and task.exception() is not None:
            LOGGER.error("event handling crashed", exc_info=task.exception())
            self._request_stop(StopReason.FAILURES, f"event handling crashed: {task.exception()!r}")

    async def _handle(self, delivery: Delivery) -> None:
        async with self._slots:
            if self._stop is not None or delivery.stale:
                delivery.nack()  # never started: back to the queue for another pilot
                return
            slot_dir = self._free_dirs.pop()
            try:
                await self._process(delivery, slot_dir)
            finally:
                self._free_dirs.append(slot_dir)

    async def _process(self, delivery: Delivery, slot_dir: Path) -> None:
        event_id = uuid.uuid4().hex
        queue = delivery.link.spec.name
        files = self._event_files(event_id, slot_dir)
        self.reporter.task_started()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            try:
                sent = await self._run_task(delivery, files, event_id)
            except TaskError as exc:
                await self._fail_event(delivery, exc, event_id)
                return
        except (OutputUnroutableError, QueueGoneError) as exc:
            delivery.nack()
            self.reporter.task_returned()
            detail = f"event from {queue} not acked (returned to its queue): {exc}"
            LOGGER.error("event %s: %s", event_id, detail)
            self._request_stop(StopReason.QUEUE_GONE, detail)
            return
        except (_Abandoned, BrokerError) as exc:
            delivery.nack()
            self.reporter.task_returned()
            LOGGER.warning("event %s from %s abandoned, %s: %s", event_id, queue, self._unsettled_fate(), exc)
            return
        except asyncio.CancelledError:
            returned = delivery.nack()
            self.reporter.task_returned()
            fate = "requeued" if returned else f"its connection is gone, {self._unsettled_fate()}"
            LOGGER.warning("event %s from %s: task cancelled (%s)", event_id, queue, fate)
            raise
        finally:
            if not self.config.keep_all_task_files:
                _empty_task_io(files)
        acked = delivery.ack()
        self.reporter.task_succeeded()
        self._recent_failures.append(False)
        # per event at DEBUG (the reporter logs the counters at each report); a lost ack always shows
        LOGGER.log(
            logging.DEBUG if acked else logging.WARNING,
            "event %s from %s: done in %.3fs, output sent to %d queue(s)%s",
            event_id, queue, loop.time() - started, sent,
            "" if acked else "; ack lost with the connection, the event will be redelivered (duplicate output)",
        )  # fmt: skip

    def _unsettled_fate(self) -> str:
        """What becomes of an event the pilot could not settle on a connection that is gone."""
        if self._stop is StopReason.RETIRED:
            return "gone with its retired queue (the workflow ended)"
        return "the broker redelivers it"

    def _event_files(self, event_id: str, slot_dir: Path) -> TaskFiles:
        """The event's files: in its slot's directory, or in a directory of its own when files are kept.

        The task's stdout is captured only when someone will read it (kept files, dumps).
        """
        keep = self.config.keep_all_task_files
        task_io = self.config.data_dir / event_id if keep else slot_dir
        keep_stdout = keep or self.config.dump_task_output
        return TaskFiles(
            self.config.data_hub,
            stderr=task_io / "task-stderr.txt",
            stdout=task_io / "task-stdout.txt" if keep_stdout else None,
            task_io=task_io,
            infile=task_io / f"infile-{event_id}{self.config.infile_ext}",
            outfile=task_io / f"outfile-{event_id}{self.config.outfile_ext}",
        )

    async def _run_task(self, delivery: Delivery, files: TaskFiles, event_id: str) -> int:
        """Run the task for one event and publish its output; return how many queues got an output."""
        assert files.task_io is not None and files.infile is not None and files.outfile is not None
        event = decode_event(delivery.body)
        try:
            try:
                write_infile(files.infile, event)
            except FileNotFoundError:  # a directory per event (kept files), or the last task removed its own
                files.task_io.mkdir(exist_ok=True)
                write_infile(files.infile, event)
        except OSError as exc:
            raise TaskInputError(f"cannot write the task's input file: {exc}") from exc
        command = self.runner.build(self.config.task, self._task_image, files)
        LOGGER.debug("event %s: running %s", event_id, command)
        try:
            await execute(command, files, self.config.task.timeout)
        finally:
            if self.config.dump_task_output:
                dump_output(files, f"event {event_id}")
        output = read_outfile(files.outfile)
        if output is None or not self._outputs:
            return 0
        await self._publish(encode_event(output), delivery, self._outputs)
        return len(self._outputs)

    async def _fail_event(self, delivery: Delivery, exc: TaskError, event_id: str) -> None:
        """Dead-letter the event with its error (then ack it), or requeue it when there is no failed-events queue."""
        queue = delivery.link.spec.name
        if self._failed_link is None:
            delivery.nack()
            where = "requeued"
        else:
            body = failed_event_body(delivery.body, exc, queue, self._identity)
            await self._publish(body, delivery, self._failed_links)
            where = f"sent to the failed-events queue {self._failed_link.spec.name}"
            if not delivery.ack():
                where += "; ack lost with the connection, the event will be redelivered (duplicate failed event)"
        self.reporter.task_failed(str(exc))
        LOGGER.warning("event %s from %s: %s: %s (%s)", event_id, queue, exc.kind, exc, where)
        self._count_failure(exc)

    async def _publish(self, body: bytes, delivery: Delivery, links: list[OutputLink]) -> None:
        """Publish to every link and wait for all confirms, retrying through reconnections."""
        pending = list(links)
        while pending:
            results = await asyncio.gather(*(link.publish(body) for link in pending), return_exceptions=True)
            failed = []
            for link, result in zip(pending, results, strict=True):
                if isinstance(result, LinkLostError):
                    failed.append(link)
                elif isinstance(result, BaseException):
                    raise result
            if failed and delivery.stale:
                raise _Abandoned("input connection lost before the output was confirmed")
            for link in failed:
                LOGGER.warning("output to %s not confirmed; publishing again", link)
                await asyncio.sleep(PUBLISH_RETRY_PAUSE)
                await link.wait_ready()
            pending = failed

    def _count_failure(self, exc: TaskError) -> None:
        """Apply the stop rule: upstream's (N failures) when asked for, else the failure rate over a window."""
        tolerated = exc.kind in self.config.okay_errors
        self._recent_failures.append(not tolerated)
        if tolerated:
            LOGGER.info("%s is listed in EWMS_PILOT_OKAY_ERRORS: not counted towards stopping", exc.kind)
            return
        self._counted_failures += 1
        c = self.config
        if c.stop_listening_on_task_error:
            if self._counted_failures >= c.max_task_failures:
                self._request_stop(
                    StopReason.FAILURES, f"stopped after {self._counted_failures} failed task(s); last error: {exc}"
                )
            return
        failures, finished = sum(self._recent_failures), len(self._recent_failures)
        if failures >= c.failure_min_count and failures / finished > c.failure_max_fraction:
            self._request_stop(
                StopReason.FAILURES,
                f"stopped after {failures} failed task(s) out of the last {finished} "
                f"(more than {c.failure_max_fraction:.0%}); last error: {exc}",
            )

    # -- notifications ---------------------------------------------------------------------------------------

    def _request_stop(self, reason: StopReason, detail: str) -> None:
        if self._stop is None:
            self._stop, self._stop_detail = reason, detail
        self._wake.set()

    def _on_input_lost(self, link: InputLink) -> None:
        doomed = [task for task, delivery in self._tasks.items() if delivery.link is link]
        if doomed:
            LOGGER.warning("%s lost: cancelling %d task(s); the broker redelivers their events", link, len(doomed))
        for task in doomed:
            task.cancel()

    def _on_broker_fatal(self, exc: BrokerError) -> None:
        if isinstance(exc, QueuesRetiredError):
            self._request_stop(StopReason.RETIRED, str(exc))
        elif isinstance(exc, QueueGoneError):
            self._request_stop(StopReason.QUEUE_GONE, str(exc))
        else:
            self._request_stop(StopReason.BROKER, str(exc))

    def _on_signal(self, sig: signal.Signals) -> None:
        LOGGER.warning("received %s: stopping; unfinished events go back to their queues", sig.name)
        self._signal_exit_code = 128 + sig.value
        self._signal_detail = f"pilot stopped by {sig.name}"
        self._request_stop(StopReason.SIGNAL, self._signal_detail)
        if not self._listening and self._main is not None:
            self._main.cancel()  # preparing, running the init task, connecting or draining: stop right away

    def _log_settings(self) -> None:
        c = self.config
        LOGGER.info(
            "pilot settings: runner=%s task_image=%r task_args=%r task_timeout=%s concurrency=%d "
            "inputs=[%s] outputs=[%s] idle_timeout=%gs first_event_timeout=%gs data_dir=%s",
            c.platform, c.task.image, c.task.args, c.task.timeout, c.max_concurrent_tasks,
            ", ".join(f"{q.name}@{q.address}" for q in c.incoming),
            ", ".join(f"{q.name}@{q.address}" for q in c.outgoing),
            c.timeout_incoming, c.timeout_first_message, c.data_dir,
        )  # fmt: skip
        if not c.outgoing:
            LOGGER.warning("no output queues (EWMS_PILOT_QUEUE_OUTGOING is empty): task outputs are discarded")


def _empty_task_io(files: TaskFiles) -> None:
    """Empty an event's directory for the next event: the known files one by one, anything else recursively."""
    assert files.task_io is not None
    try:
        for path in (files.infile, files.outfile, files.stderr, files.stdout):
            if path is not None:
                path.unlink(missing_ok=True)
        with os.scandir(files.task_io) as leftovers:
            for entry in leftovers:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
    except FileNotFoundError:
        pass  # the task removed the directory itself: it is made again for the next event
    except OSError as exc:
        LOGGER.warning("could not empty %s: %s", files.task_io, exc)
