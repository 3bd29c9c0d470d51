"""``ewms dev up --locations 2``: the dev stack runs one TMS per location (``local`` and ``local-2``, each its own
schedd, state dir and log); a workflow whose task runs at both launches a taskforce at each, and ``down`` stops
every part."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from ewms_client import WMSClient
from ewms_dev.factories import task_request, workflow_request
from ewms_dev.processes import alive, until


def _ewms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wms.cli", *args], capture_output=True, text=True, timeout=240, env=os.environ.copy()
    )


async def test_dev_stack_with_two_locations(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    up = await asyncio.to_thread(_ewms, "dev", "up", "--detach", "--data-dir", str(data_dir), "--locations", "2")
    assert up.returncode == 0, up.stdout + up.stderr
    state = json.loads((data_dir / "stack.json").read_text())
    try:
        assert set(state["tms_pids"]) == {"local", "local-2"} and all(map(alive, state["tms_pids"].values()))
        assert "local, local-2" in up.stdout
        url = f"http://127.0.0.1:{state['wms_port']}"
        async with WMSClient(url, state["user_token"]) as client:
            created = await client.submit_workflow(workflow_request(tasks=[task_request(("local", "local-2"))]))
            workflow_id = created["workflow"]["workflow_id"]

            async def taskforces() -> list[dict]:
                return await client.taskforces_of(workflow_id)

            launched = await until(
                taskforces, lambda tfs: all(tf["cluster_id"] is not None for tf in tfs), 60, "both launched"
            )
            assert {tf["schedd"] for tf in launched} == {"local-ap", "local-ap-2"}
            logs = {tf["schedd"]: tf["job_event_log_fpath"] for tf in launched}
            assert logs["local-ap"].startswith(str(data_dir / "tms" / ""))
            assert logs["local-ap-2"].startswith(str(data_dir / "tms-2" / ""))
            await client.abort(workflow_id)
        assert (data_dir / "tms.log").exists() and (data_dir / "tms-2.log").exists()
    finally:
        down = await asyncio.to_thread(_ewms, "dev", "down", "--data-dir", str(data_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(alive(pid) for pid in (state["wms_pid"], *state["tms_pids"].values()))
