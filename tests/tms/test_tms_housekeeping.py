"""File manager: which logs and taskforce dirs are compressed, archived or deleted, by age and use."""

from __future__ import annotations

import gzip
import os
import tarfile
import time
from pathlib import Path

from tms_fakes import FakeWMS, make_taskforce

from tms.housekeeping import FileManager
from tms.wms_client import WMSClient

DAY = 86400.0


def aged(path: Path, days: float, text: str = "x\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(text)
    stamp = time.time() - days * DAY
    os.utime(path, (stamp, stamp))
    return path


async def test_ages_and_use(fake_wms: FakeWMS, make_config) -> None:
    config = make_config(fake_wms.url)  # defaults: logs 1 d / 7 d, archives 7 d, taskforce dirs 5 d / 5 d
    root = config.job_event_log_dir
    fresh = aged(root / "2026-03-09.tms.jel", 0.5)
    unused = aged(root / "2026-03-07.tms.jel", 2, "events of done taskforces\n")
    in_use = aged(root / "2026-03-06.tms.jel", 3)
    ancient = aged(root / "2026-02-20.tms.jel", 8)
    old_archive = aged(root / "2026-01-01.tms.jel.gz", 8)
    new_archive = aged(root / "2026-03-01.tms.jel.gz", 6)
    tf_dir = root / "ewms-taskforce-TF-old"
    aged(tf_dir / "cluster-5" / "0.out", 6, "pilot said hi\n")
    aged(tf_dir / "cluster-5", 6)
    aged(tf_dir, 6)
    busy_dir = root / "ewms-taskforce-TF-busy"
    aged(busy_dir / "cluster-6" / "0.out", 0.1)  # a job still writes here
    aged(busy_dir, 9)
    old_tar = aged(root / "ewms-taskforce-TF-older.tar.gz", 6)
    other = aged(root / "notes.txt", 30)
    fake_wms.add(make_taskforce("TF-live", phase="condor-submit", job_event_log_fpath=str(in_use)))
    fake_wms.add(make_taskforce("TF-done", phase="condor-complete", job_event_log_fpath=str(unused)))

    wms = WMSClient.from_config(config)
    done = await FileManager(config, wms).run_once()
    await wms.close()
    assert sorted((action, path.name) for action, path in done) == [
        ("archived", "ewms-taskforce-TF-old"),
        ("compressed", "2026-02-20.tms.jel"),
        ("compressed", "2026-03-07.tms.jel"),
        ("deleted log archive", "2026-01-01.tms.jel.gz"),
        ("deleted taskforce archive", "ewms-taskforce-TF-older.tar.gz"),
    ]
    assert fresh.exists() and in_use.exists() and new_archive.exists() and busy_dir.is_dir() and other.exists()
    assert not unused.exists() and not ancient.exists() and not old_archive.exists() and not old_tar.exists()
    with gzip.open(root / "2026-03-07.tms.jel.gz", "rt") as f:
        assert f.read() == "events of done taskforces\n"
    assert not tf_dir.exists()
    with tarfile.open(root / "ewms-taskforce-TF-old.tar.gz") as tar:
        member = tar.extractfile("ewms-taskforce-TF-old/cluster-5/0.out")
        assert member is not None and member.read() == b"pilot said hi\n"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary files left
    queries = [c[2]["query"] for c in fake_wms.calls_to("/query/taskforces")]
    assert {"schedd": "ap.test", "job_event_log_fpath": str(in_use), "phase": {"$ne": "condor-complete"}} in queries


async def test_wms_unreachable_keeps_logs_until_the_long_age(make_config) -> None:
    config = make_config("http://127.0.0.1:9")  # nothing listens there
    root = config.job_event_log_dir
    maybe_used = aged(root / "a.tms.jel", 2)
    aged(root / "b.tms.jel", 8)
    wms = WMSClient.from_config(config)
    done = await FileManager(config, wms).run_once()
    await wms.close()
    assert [(a, p.name) for a, p in done] == [("compressed", "b.tms.jel")]
    assert maybe_used.exists()


async def test_custom_ages(make_config) -> None:
    config = make_config(jel_expiry_short=60, jel_expiry_long=120, jel_archive_delete_expiry=30)
    root = config.job_event_log_dir
    aged(root / "a.tms.jel", 150 / DAY)
    aged(root / "a.tms.jel.gz.keep", 1)
    wms = WMSClient.from_config(config)
    manager = FileManager(config, wms)
    assert [(a, p.name) for a, p, _ in manager.plan(time.time())] == [("compressed", "a.tms.jel")]
    later = [(a, p.name) for a, p, _ in manager.plan(time.time() + 10)]
    assert later == [("compressed", "a.tms.jel")]
    await manager.run_once()
    gz = root / "a.tms.jel.gz"
    assert gz.exists() and [(a, p.name) for a, p, _ in manager.plan(time.time() + 31)] == [
        ("deleted log archive", "a.tms.jel.gz")
    ]
    await wms.close()
