"""The WMS's operations: every multi-step change of workflows, task directives and taskforces, and the invariants
they hold (see each module). Handlers parse a request, call one operation and answer with its result or its
:class:`OperationError`; daemons reuse the same steps (``workflows.stop_taskforces``)."""

from __future__ import annotations

from dataclasses import dataclass

from mqs_client import ManagedMQSClient
from wms.config import WMSConfig
from wms.daemons.loop import Wakeups
from wms.database.store import Store
from wms.lifecycle import Lifecycle
from wms.operations.errors import OperationError
from wms.operations.failed_events import FailedEvents
from wms.operations.progress import Progress
from wms.operations.taskforces import Taskforces
from wms.operations.tms_actions import TMSActions
from wms.operations.workflows import Workflows

__all__ = ["OperationError", "Operations"]


@dataclass
class Operations:
    """The operations, wired to one store, MQS and set of daemon wake-ups."""

    workflows: Workflows
    taskforces: Taskforces
    progress: Progress
    failed_events: FailedEvents
    tms: TMSActions

    @classmethod
    def build(
        cls, store: Store, lifecycle: Lifecycle, mqs: ManagedMQSClient, config: WMSConfig, wakeups: Wakeups
    ) -> Operations:
        """Wire the operations."""
        workflows = Workflows(store, lifecycle, mqs, config, wakeups)
        return cls(
            workflows=workflows,
            taskforces=Taskforces(store, lifecycle, config, wakeups),
            progress=Progress(store, mqs, config),
            failed_events=FailedEvents(store, mqs, workflows),
            tms=TMSActions(store, lifecycle, mqs, config),
        )
