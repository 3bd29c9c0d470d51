"""``ewms-tms check``: the schedd through the recording double (which writes the submit events a schedd writes), and
everything else for real: a real WMS with real TMS tokens, real directories, a real token endpoint, the real command."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import htcondor2
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from tms_fakes import RecordingSchedd

from tms.backends.htcondor import HTCondorBackend
from tms.check import SCHEDD_STEPS, Checker, Outcome, check
from wms.auth import Role


@pytest.fixture
def site(make_config, wms_server, make_token, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: the TMS settings of an htcondor access point served by a real WMS, with a pilot image on disk."""
    image_base = tmp_path / "cvmfs" / "ewms-pilot"
    (image_base.parent / "ewms-pilot:1.4.0").mkdir(parents=True)

    def _make(role: Role = Role.TMS, **overrides):  # type: ignore[no-untyped-def]
        settings = {"backend": "htcondor", "pilot_image_base": str(image_base), "ewms_token": make_token(role, "tms")}
        return make_config(wms_server.url, **{**settings, **overrides})

    return _make


def outcomes(results) -> dict[str, Outcome]:  # type: ignore[no-untyped-def]
    return {r.name: r.outcome for r in results}


async def test_every_check_passes_on_a_working_access_point(site, capsys) -> None:  # type: ignore[no-untyped-def]
    config = site()
    schedd = RecordingSchedd(first_cluster=40, writes_job_event_log=True)
    backend = HTCondorBackend(config.job_event_log_dir, schedd)
    assert await check(config, backend, wait=0.5) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["CHECK", "RESULT", "DETAIL"]
    assert "all checks passed" in out and "FAILED" not in out
    # the tiny job: the starter's submit description with a sleep instead of the pilot, logged where the watcher looks
    (first, n1), (second, n2) = schedd.submits
    assert (n1, n2) == (1, 1)
    for description in (first, second):
        assert isinstance(description, htcondor2.Submit)
        assert (description["universe"], description["executable"]) == ("vanilla", "/bin/sleep")
        assert description["log"] == str(backend.job_event_log_path())
        assert description["MY.EWMSTaskforceUUID"].startswith('"ewms-check-')
        assert "container_image" not in description
    assert f"{backend.job_event_log_path()}: SUBMIT" in out
    # condor_rm of the second job, then of the first at the end: nothing left in the queue
    assert [spec for _, spec, _ in schedd.actions] == ["ClusterId == 41", "ClusterId == 40"]


async def test_each_problem_is_named(site, make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = site(
        role=Role.USER,  # not the TMS's role
        job_event_log_dir=blocker / "jel",
        pilot_image_base=str(tmp_path / "nowhere" / "ewms-pilot"),
    )
    results = await Checker(config, HTCondorBackend(tmp_path / "jel"), wait=0.5).run()
    found = {r.name: r for r in results}
    assert found["directories writable"].outcome is Outcome.FAILED
    assert "is not writable" in found["directories writable"].detail
    assert "refused the TMS's credentials" in found["WMS answers the TMS's credentials"].detail
    assert "no pilot image" in found["pilot available"].detail
    # no HTCondor on this machine: the schedd does not answer, the steps that need it are skipped
    assert "cannot locate the schedd" in found["schedd answers"].detail
    assert [found[name].outcome for name in SCHEDD_STEPS] == [Outcome.FAILED] + [Outcome.SKIPPED] * 3


async def test_a_refused_submit_skips_the_rest(site) -> None:  # type: ignore[no-untyped-def]
    config = site()
    schedd = RecordingSchedd(fail_with=htcondor2.HTCondorException("no such user"))
    checker = Checker(config, HTCondorBackend(config.job_event_log_dir, schedd), wait=0.5)
    found = outcomes(await checker.run())
    assert [found[name] for name in SCHEDD_STEPS] == [Outcome.OK, Outcome.FAILED, Outcome.SKIPPED, Outcome.SKIPPED]
    assert checker.failed


class TokenEndpoint(tornado.web.RequestHandler):
    """Client credentials -> a real TMS token for the WMS under test."""

    def initialize(self, issue, issued: list[str]) -> None:  # type: ignore[no-untyped-def]
        self.issue = issue
        self.issued = issued

    def post(self) -> None:
        self.issued.append(self.issue())
        self.finish({"access_token": self.issued[-1], "expires_in": 3600, "token_type": "Bearer"})


@pytest.fixture
async def token_url(make_token) -> AsyncIterator[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    issued: list[str] = []
    args = {"issue": lambda: make_token(Role.TMS, f"tms-{len(issued)}"), "issued": issued}
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/token", TokenEndpoint, args)]))
    server.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}/token", issued
    server.stop()


async def test_client_credentials_are_refreshed(site, token_url) -> None:  # type: ignore[no-untyped-def]
    url, issued = token_url
    config = site(ewms_token="", ewms_token_url=url, ewms_client_id="tms", ewms_client_secret="s")
    results = await Checker(config, None).run()
    wms = next(r for r in results if r.name == "WMS answers the TMS's credentials")
    assert wms.outcome is Outcome.OK and "token refreshed" in wms.detail
    assert len(issued) == 2


async def test_the_command_exits_with_the_outcome(wms_server, make_token, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``python -m tms check`` on a local-backend access point: 0 when every check passes, 1 when one fails, 2 when
    the settings do not parse."""

    async def run(token: str | None) -> tuple[int, str]:
        env = {**os.environ, "EWMS_ADDRESS": wms_server.url, "TMS_BACKEND": "local", "TMS_STATE_DIR": str(tmp_path)}
        env.pop("EWMS_TOKEN", None)
        if token is not None:
            env["EWMS_TOKEN"] = token
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tms", "check", "--wait", "1", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    code, out = await run(make_token(Role.TMS, "tms"))
    assert code == 0, out
    assert "backend local: no schedd" in out and "all checks passed" in out
    code, out = await run(make_token(Role.USER, "tms"))
    assert code == 1 and "refused the TMS's credentials" in out, out
    code, out = await run(None)
    assert code == 2 and "configuration error" in out, out
