"""The WMS process: builds and wires the store, MQS client, operations, daemons and REST server, and starts and
stops them together. What each part does lives in its own module (``wms.operations``, ``wms.daemons``, ...)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.httpserver
from pymongo import AsyncMongoClient

from mqs_client import ManagedMQSClient, MQSConfig, make_mqs_client
from wms import schema
from wms.auth import TokenValidator
from wms.config import WMSConfig
from wms.daemons.elastic_workers import ElasticWorkers
from wms.daemons.launch_control import LaunchControl
from wms.daemons.loop import Wakeups, run_forever
from wms.daemons.mq_activator import MQActivator
from wms.daemons.retention import Retention
from wms.database.store import Store
from wms.lifecycle import Lifecycle
from wms.metrics import Metrics
from wms.operations import Operations
from wms.server import make_app, make_http_server

LOGGER = logging.getLogger(__name__)


class WMS:
    """The service's parts, wired together (what handlers reach through ``self.wms``), and its start and stop."""

    def __init__(self, config: WMSConfig, mqs: ManagedMQSClient | None = None) -> None:
        self.config = config
        self.spec = schema.load(config.openapi_path)
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            config.mongodb_uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, tz_aware=False
        )
        self.store = Store(self.mongo, config.db_name, self.spec)
        self.lifecycle = Lifecycle(self.store.taskforces)
        self.mqs: ManagedMQSClient = mqs or make_mqs_client(self.store.db, MQSConfig.from_env(config.env))
        self.auth = TokenValidator(
            audience=config.auth_audience,
            signing_key=config.auth_signing_key,
            openid_url=config.auth_openid_url,
            user_group_pattern=config.auth_user_group_pattern,
            issuer=config.auth_issuer,
        )
        self.retention = Retention(self.store, self.mqs, config)
        self.metrics = Metrics(config.metrics_refresh_seconds)
        self.wakeups = Wakeups()
        self.operations = Operations.build(self.store, self.lifecycle, self.mqs, config, self.wakeups)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http: tornado.httpserver.HTTPServer | None = None
        self.port: int = config.rest_port

    async def start(self) -> None:
        """Ensure indexes, start the daemons, and listen."""
        await self.store.ensure_indexes()
        await self.mqs.ensure_indexes()
        if self.config.run_daemons:
            self._start_daemons()
        else:
            LOGGER.info("REST only (WMS_RUN_DAEMONS=false): another WMS instance runs the daemons")
        self._http = make_http_server(make_app(self), self.config)
        sockets = tornado.netutil.bind_sockets(self.config.rest_port, self.config.rest_host)
        self.port = sockets[0].getsockname()[1]
        self._http.add_sockets(sockets)
        LOGGER.info("WMS listening on http://%s:%d/v0/", self.config.rest_host, self.port)

    def _start_daemons(self) -> None:
        """The MQ activator, launch control, retention, elastic workers and MQS housekeeping, as background tasks."""
        activator = MQActivator(self.store, self.lifecycle, self.mqs, self.config, self.wakeups.launch)
        launcher = LaunchControl(self.store, self.lifecycle, self.config)
        poll = self.config.daemon_poll_seconds
        self._tasks = [
            asyncio.create_task(
                run_forever("mq-activator", activator.one_pass, self.wakeups.mq_activator, poll, self._stop)
            ),
            asyncio.create_task(
                run_forever("launch-control", launcher.one_pass, self.wakeups.launch, poll, self._stop)
            ),
            asyncio.create_task(
                run_forever(
                    "retention",
                    self.retention.one_pass,
                    self.wakeups.retention,
                    self.config.retention_interval_seconds,
                    self._stop,
                )
            ),
            asyncio.create_task(
                run_forever(
                    "elastic-workers",
                    ElasticWorkers(self.store, self.mqs, self.operations.taskforces, self.config).one_pass,
                    self.wakeups.elastic,
                    self.config.elastic_interval_seconds,
                    self._stop,
                )
            ),
        ]
        self._tasks.append(asyncio.create_task(self.mqs.run_housekeeping(self._stop)))

    async def stop(self) -> None:
        """Stop listening, stop the daemons, close connections (a second call does nothing)."""
        if self._stop.is_set():
            return
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()
        self._stop.set()
        self.wakeups.mq_activator.set()
        self.wakeups.launch.set()
        self.wakeups.retention.set()
        self.wakeups.elastic.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 10)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
        await self.mqs.close()
        await self.mongo.close()
        LOGGER.info("WMS stopped")
