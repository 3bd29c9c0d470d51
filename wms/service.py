"""The WMS process: builds and wires the store, MQS client, operations, daemons and REST server, and starts and
stops them together. What each part does lives in its own module (``wms.operations``, ``wms.daemons``, ...)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from typing import Any

import tornado.httpserver
from pymongo import AsyncMongoClient

from mqs_client import ManagedMQSClient, MQSConfig, make_mqs_client
from wms import schema
from wms.auth import TokenValidator
from wms.config import WMSConfig
from wms.daemons.loop import Wakeups
from wms.daemons.retention import Retention
from wms.daemons.runner import DaemonRunner
from wms.database.command_log import CommandLog
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
        self.metrics = Metrics(config.metrics_refresh_seconds)
        self.mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            config.mongodb_uri,
            serverSelectionTimeoutMS=5000,
            connectTimeoutMS=5000,
            tz_aware=False,
        )
        self.store = Store(
            self.mongo, config.db_name, self.spec, CommandLog(self.metrics.registry, config.db_slow_command_ms)
        )
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
        self.wakeups = Wakeups()
        self.operations = Operations.build(self.store, self.lifecycle, self.mqs, config, self.wakeups)
        self.instance_id = secrets.token_hex(8)
        self.daemons = DaemonRunner(
            self.store,
            self.lifecycle,
            self.mqs,
            self.retention,
            config,
            self.wakeups,
            self.metrics,
            self.instance_id,
            self.operations.taskforces,
        )
        self._stop = asyncio.Event()
        self._daemons_task: asyncio.Task[None] | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self.port: int = config.rest_port

    async def start(self) -> None:
        """Ensure indexes, start the daemons, and listen."""
        await self.store.ensure_indexes()
        await self.mqs.ensure_indexes()
        LOGGER.info("WMS instance %s (pid %d)", self.instance_id, os.getpid())
        if self.config.run_daemons:
            self._daemons_task = asyncio.create_task(self.daemons.run(self._stop))
        else:
            LOGGER.info("REST only (WMS_RUN_DAEMONS=false): another WMS instance runs the daemons")
        self._http = make_http_server(make_app(self), self.config)
        sockets = tornado.netutil.bind_sockets(self.config.rest_port, self.config.rest_host)
        self.port = sockets[0].getsockname()[1]
        self._http.add_sockets(sockets)
        LOGGER.info("WMS listening on http://%s:%d/v0/", self.config.rest_host, self.port)

    async def stop(self) -> None:
        """Stop listening, stop the daemons, close connections (a second call does nothing)."""
        if self._stop.is_set():
            return
        if self._http is not None:
            self._http.stop()
            await self._http.close_all_connections()
        self._stop.set()
        if self._daemons_task is not None:
            await self._daemons_task
        await self.mqs.close()
        await self.mongo.close()
        LOGGER.info("WMS stopped")
