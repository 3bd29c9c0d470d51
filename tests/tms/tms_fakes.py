"""Test doubles for the TMS tests: an in-memory WMS (the TMS routes only) and a recording schedd.

The fake WMS moves phases by the real phase table (``wms.lifecycle``) and offers what the real WMS offers; flows
where the real WMS does more (a submit confirmed after the workflow was finished is recorded and sent to the stopper)
are tested against the real WMS in ``test_tms_with_real_wms.py``.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

from ewms_dev.factories import task_directive, taskforce
from ewms_wire.job_event_log import JobEventLogWriter
from wms.lifecycle import ALLOWED_MOVES, Phase

TOKEN = "test-tms-token"
DATA = Path(__file__).parent / "data"
FAKE_PILOT = (sys.executable, str(DATA / "fake_pilot.py"))  # a stand-in pilot for the local backend


def make_taskforce(uuid: str, schedd: str = "ap.test", n_workers: int = 2, **overrides: Any) -> dict[str, Any]:
    """A TaskforceObject in phase pending-starter."""
    return taskforce(uuid, schedd, n_workers, **overrides)


def make_pending(taskforce: dict[str, Any]) -> dict[str, Any]:
    """The pending-starter answer for a taskforce: task directive and two activated queues."""
    uuid = taskforce["taskforce_uuid"]
    profiles = [
        {
            "mqid": f"in-{uuid}",
            "workflow_id": taskforce["workflow_id"],
            "timestamp": 1.0,
            "alias": "in",
            "is_public": True,
            "is_activated": True,
            "auth_token": f"tok-in-{uuid}",
            "broker_type": "rabbitmq",
            "broker_address": "user@localhost:5672",
        },
        {
            "mqid": f"out-{uuid}",
            "workflow_id": taskforce["workflow_id"],
            "timestamp": 1.0,
            "alias": "out",
            "is_public": True,
            "is_activated": True,
            "auth_token": f"tok-out-{uuid}",
            "broker_type": "rabbitmq",
            "broker_address": "user@localhost:5672",
        },
    ]
    directive = task_directive(
        taskforce["task_id"], taskforce["workflow_id"], input_queues=[f"in-{uuid}"], output_queues=[f"out-{uuid}"]
    )
    return {"taskforce": taskforce, "task_directive": directive, "mqprofiles": profiles}


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    for key, want in query.items():
        have = doc.get(key)
        if isinstance(want, dict):
            if "$ne" in want and have == want["$ne"]:
                return False
            if "$in" in want and have not in want["$in"]:
                return False
        elif have != want:
            return False
    return True


@dataclass
class FakeWMS:
    """In-memory WMS state plus a log of every call."""

    taskforces: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    status_posts: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)
    fail_paths: list[tuple[str, int]] = field(default_factory=list)
    url: str = ""

    def add(self, taskforce: dict[str, Any]) -> None:
        """Store a taskforce (pending-starter ones are offered to the starter)."""
        self.taskforces[taskforce["taskforce_uuid"]] = taskforce
        if taskforce["phase"] == "pending-starter":
            self.pending[taskforce["taskforce_uuid"]] = make_pending(taskforce)

    def calls_to(self, fragment: str) -> list[tuple[str, str, Any]]:
        """Calls whose path contains ``fragment``."""
        return [c for c in self.calls if fragment in c[1]]


class _Handler(tornado.web.RequestHandler):
    def initialize(self, wms: FakeWMS) -> None:
        self.wms = wms

    def prepare(self) -> None:
        body = json.loads(self.request.body) if self.request.body else None
        self.wms.calls.append((self.request.method or "", self.request.path, body))
        self.body: dict[str, Any] = body or {}
        if self.request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._problem(401, "missing or invalid token")
        elif self.wms.fail_next:
            self._problem(self.wms.fail_next.pop(0), "injected failure")
        else:
            for index, (fragment, status) in enumerate(self.wms.fail_paths):
                if fragment in self.request.path:
                    del self.wms.fail_paths[index]
                    self._problem(status, "injected failure")
                    break

    def _problem(self, status: int, detail: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/problem+json")
        self.finish({"type": "about:blank", "title": "error", "status": status, "detail": detail})

    def _tf(self, uuid: str) -> dict[str, Any] | None:
        tf = self.wms.taskforces.get(uuid)
        if tf is None:
            self._problem(404, f"no taskforce found with uuid {uuid}")
        return tf

    def _move(self, uuid: str, target: str, **fields: Any) -> None:
        """Move by the real phase table; a repeat of a move that took effect is fine, anything else is 409."""
        tf = self._tf(uuid)
        if tf is None:
            return
        if tf["phase"] != target:
            if Phase(target) not in ALLOWED_MOVES[Phase(tf["phase"])]:
                self._problem(409, f"taskforce {uuid} in phase {tf['phase']} cannot move to {target}")
                return
            tf.update(fields, phase=target)
        self.finish({"taskforce_uuid": uuid})


class PendingStarter(_Handler):
    def get(self) -> None:
        schedd = self.get_query_argument("schedd")
        for uuid, pending in self.wms.pending.items():
            if self.wms.taskforces[uuid]["phase"] == "pending-starter" and pending["taskforce"]["schedd"] == schedd:
                self.finish(copy.deepcopy(pending))
                return
        self.finish({})


class TaskforceGet(_Handler):
    def get(self, uuid: str) -> None:
        tf = self._tf(uuid)
        if tf is not None:
            self.finish(tf)


class CondorSubmit(_Handler):
    def post(self, uuid: str) -> None:
        fields = {k: self.body[k] for k in ("cluster_id", "n_workers", "submit_dict", "job_event_log_fpath")}
        self._move(uuid, "condor-submit", **fields)


class Failed(_Handler):
    def post(self, action: str, uuid: str) -> None:
        tf = self._tf(uuid)
        if tf is not None:
            tf["phase_change_log"].append(
                {"target_phase": action, "was_successful": False, "context": self.body["error"]}
            )
            self.finish({"taskforce_uuid": uuid})


class PendingStopper(_Handler):
    def get(self) -> None:
        schedd = self.get_query_argument("schedd")
        for tf in self.wms.taskforces.values():
            if (
                tf["phase"] == "pending-stopper"
                and tf["schedd"] == schedd
                and tf["cluster_id"] is not None
                and not any(
                    not e["was_successful"] and e["target_phase"] == "condor-rm" for e in tf["phase_change_log"]
                )
            ):
                self.finish(tf)
                return
        self.finish({})


class CondorRm(_Handler):
    def post(self, uuid: str) -> None:
        self._move(uuid, "condor-rm")


class CondorComplete(_Handler):
    def post(self, uuid: str) -> None:
        self._move(uuid, "condor-complete", condor_complete_ts=self.body["condor_complete_ts"])


class Statuses(_Handler):
    def post(self) -> None:
        self.wms.status_posts.append((time.monotonic(), self.body))
        results = []
        for key, field_name in (
            ("compound_statuses_by_taskforce", "compound_statuses"),
            ("top_task_errors_by_taskforce", "top_task_errors"),
        ):
            for uuid, value in (self.body.get(key) or {}).items():
                tf = self.wms.taskforces.get(uuid)
                if tf is None:
                    results.append({"uuid": uuid, "status": "failed", "error": "no taskforce found with uuid"})
                else:
                    tf[field_name] = value
                    results.append({"uuid": uuid, "status": "updated"})
        if any(r["status"] == "failed" for r in results):
            self.set_status(207)
        self.finish({"results": results})


class Query(_Handler):
    PAGE = 2

    def post(self) -> None:
        found = [tf for tf in self.wms.taskforces.values() if _matches(tf, self.body["query"])]
        start = int(self.body.get("after") or 0)
        page = found[start : start + self.PAGE]
        projection = self.body.get("projection")
        if projection:
            page = [{k: tf.get(k) for k in projection} for tf in page]
        more = start + self.PAGE < len(found)
        self.finish({"taskforces": page, "next_after": str(start + self.PAGE) if more else None})


async def start_fake_wms() -> tuple[FakeWMS, tornado.httpserver.HTTPServer]:
    """Serve a FakeWMS on a free localhost port (in the running loop)."""
    wms = FakeWMS()
    args = {"wms": wms}
    app = tornado.web.Application(
        [
            (r"/v0/tms/pending-starter/taskforces", PendingStarter, args),
            (r"/v0/tms/pending-stopper/taskforces", PendingStopper, args),
            (r"/v0/tms/(condor-submit|condor-rm)/taskforces/([\w-]+)/failed", Failed, args),
            (r"/v0/tms/condor-submit/taskforces/([\w-]+)", CondorSubmit, args),
            (r"/v0/tms/condor-rm/taskforces/([\w-]+)", CondorRm, args),
            (r"/v0/tms/condor-complete/taskforces/([\w-]+)", CondorComplete, args),
            (r"/v0/tms/statuses/taskforces", Statuses, args),
            (r"/v0/query/taskforces", Query, args),
            (r"/v0/taskforces/([\w-]+)", TaskforceGet, args),
        ]
    )
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    wms.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    return wms, server


class RecordingSchedd:
    """Stands in for ``htcondor2.Schedd``: records calls, answers like a schedd."""

    def __init__(
        self, first_cluster: int = 500, fail_with: Exception | None = None, writes_job_event_log: bool = False
    ) -> None:
        self.next_cluster = first_cluster
        self.fail_with = fail_with
        self.writes_job_event_log = writes_job_event_log  # a submit event per job, as a schedd writes to ``log``
        self.submits: list[tuple[Any, int]] = []
        self.actions: list[tuple[Any, str, str | None]] = []
        self.queries: list[tuple[str, list[str]]] = []
        self.history_queries: list[tuple[str | None, list[str], int]] = []
        self.job_ads: list[dict[str, Any]] = []  # the queue, as the ads a query projects
        self.history_ads: list[dict[str, Any]] = []  # jobs that left the queue, most recent first

    def submit(self, description: Any, count: int = 0) -> Any:
        if self.fail_with is not None:
            raise self.fail_with
        self.submits.append((description, count))
        cluster, self.next_cluster = self.next_cluster, self.next_cluster + 1
        uuid = description["MY.EWMSTaskforceUUID"].strip('"')
        for proc in range(count):
            ad = {"ClusterId": cluster, "ProcId": proc, "UserLog": description["log"], "EWMSTaskforceUUID": uuid}
            self.job_ads.append(ad)
            if self.writes_job_event_log:
                JobEventLogWriter(description["log"]).submit(cluster, proc)
        return _Result(cluster, count)

    def query(self, constraint: str = "True", projection: list[str] | None = None) -> list[dict[str, Any]]:
        """Answers only ``EWMSTaskforceUUID == "<uuid>"``, the one constraint the backend sends."""
        if self.fail_with is not None:
            raise self.fail_with
        self.queries.append((constraint, list(projection or [])))
        return _select(self.job_ads, constraint, projection)

    def history(
        self, constraint: str | None = None, projection: list[str] | None = None, match: int = -1
    ) -> list[dict[str, Any]]:
        """Like :meth:`query`, over the jobs that left the queue (at most ``match`` of them unless -1)."""
        if self.fail_with is not None:
            raise self.fail_with
        self.history_queries.append((constraint, list(projection or []), match))
        found = _select(self.history_ads, constraint or "", projection)
        return found if match < 0 else found[:match]

    def leave_queue(self, cluster_id: int) -> None:
        """The cluster's jobs complete: they move from the queue to the history."""
        gone = [ad for ad in self.job_ads if ad["ClusterId"] == cluster_id]
        self.job_ads = [ad for ad in self.job_ads if ad["ClusterId"] != cluster_id]
        self.history_ads[:0] = reversed(gone)

    def act(self, action: Any, job_spec: str, reason: str | None = None) -> dict[str, int]:
        if self.fail_with is not None:
            raise self.fail_with
        self.actions.append((action, job_spec, reason))
        return {"TotalSuccess": 3, "TotalNotFound": 0}


def _select(ads: list[dict[str, Any]], constraint: str, projection: list[str] | None) -> list[dict[str, Any]]:
    match = re.fullmatch(r'EWMSTaskforceUUID == "([^"]*)"', constraint)
    assert match, constraint
    found = [ad for ad in ads if ad["EWMSTaskforceUUID"] == match.group(1)]
    return [{k: ad[k] for k in projection} if projection else ad for ad in found]


@dataclass
class _Result:
    _cluster: int
    _count: int

    def cluster(self) -> int:
        return self._cluster

    def num_procs(self) -> int:
        return self._count
