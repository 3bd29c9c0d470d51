"""``ewms dev up|env|down`` through the entry point, on a real dev stack: the dashboard sign-in link, a second
``up`` on a running data dir, ``env`` warning when the stack is down."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.long_file


def _ewms(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wms.cli", *args], capture_output=True, text=True, timeout=240, env=os.environ.copy()
    )


async def test_up_link_second_up_and_env_warning(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "stack")
    env = _ewms("dev", "env", "--data-dir", data_dir)
    assert env.returncode == 2 and env.stderr == f"error: no dev stack in {data_dir}: run `ewms dev up` first\n"

    up = await asyncio.to_thread(_ewms, "dev", "up", "--detach", "--data-dir", data_dir)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        link = re.search(r"^dashboard: (http://127\.0\.0\.1:\d+)/ui/#token=(\S+)$", up.stdout, re.M)
        assert link, up.stdout
        url, token = link.groups()
        async with httpx.AsyncClient() as http:
            page = await http.get(f"{url}/ui/")
            me = await http.get(f"{url}/v0/workflows/WF-0-00000000", headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200 and me.status_code == 404  # the link's token is a user's: signed in

        again = await asyncio.to_thread(_ewms, "dev", "up", "--data-dir", data_dir)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith(f"a dev stack is already running on {data_dir} (pid ")
        assert f"dashboard: {url}/ui/#token={token}" in again.stdout
        again = await asyncio.to_thread(_ewms, "dev", "up", "--detach", "--data-dir", data_dir)
        assert again.returncode == 0 and "already running" in again.stdout

        env = _ewms("dev", "env", "--data-dir", data_dir)
        assert env.returncode == 0 and env.stderr == "" and f"export EWMS_URL={url}\n" in env.stdout
    finally:
        down = await asyncio.to_thread(_ewms, "dev", "down", "--data-dir", data_dir)
    assert down.returncode == 0, down.stdout + down.stderr
    env = _ewms("dev", "env", "--data-dir", data_dir)
    assert env.returncode == 0 and f"export EWMS_URL={url}\n" in env.stdout
    assert env.stderr == f"warning: the dev stack in {data_dir} is not running; start it with `ewms dev up`\n"
