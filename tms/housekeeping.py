"""File manager: compresses, archives and deletes old job event logs and per-taskforce dirs in the log dir.

Ages are measured from the last modification (for a dir: the newest file inside):
- ``*.tms.jel`` is gzipped after ``jel_expiry_short`` if no unfinished taskforce of this schedd uses it, and after
  ``jel_expiry_long`` regardless; ``*.tms.jel.gz`` is deleted ``jel_archive_delete_expiry`` after it was written.
- ``ewms-taskforce-*`` dirs are tarred (``.tar.gz``) after ``taskforce_dirs_expiry``; the tarballs are deleted
  ``taskforce_dirs_tar_expiry`` after they were written.
Archives are written to a temporary file and moved into place with ``os.replace``, so a crash never leaves a
partial archive under the final name; the original is removed only after that.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from ewms_client import WMSError
from tms import metrics
from tms.backends.base import JEL_SUFFIX
from tms.config import TMSConfig
from tms.files import atomic_writer
from tms.wms_client import WMSClient

LOGGER = logging.getLogger(__name__)

TASKFORCE_DIR_PREFIX = "ewms-taskforce-"
GZ_SUFFIX = ".gz"
TAR_SUFFIX = ".tar.gz"

COMPRESS_LOG = "compressed"
COMPRESS_LOG_IF_UNUSED = "compress if unused"
DELETE_LOG_ARCHIVE = "deleted log archive"
ARCHIVE_TASKFORCE_DIR = "archived"
DELETE_TASKFORCE_ARCHIVE = "deleted taskforce archive"


class FileManager:
    """One :meth:`run_once` looks at every entry of the job event log dir."""

    def __init__(self, config: TMSConfig, wms: WMSClient, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.wms = wms
        self.clock = clock

    async def step(self) -> bool:
        """Poll-loop adapter: one pass, then wait the full interval."""
        await self.run_once()
        return False

    async def run_once(self) -> list[tuple[str, Path]]:
        """Apply the age rules once; returns the actions taken as ``(action, path)``."""
        done: list[tuple[str, Path]] = []
        for action, entry, age in self.plan(self.clock()):
            if action == COMPRESS_LOG_IF_UNUSED:
                if await self._log_in_use(entry):
                    continue
                action = COMPRESS_LOG
            try:
                await asyncio.to_thread(ACTIONS[action], entry)
            except OSError as exc:
                LOGGER.error("file manager: %s of %s failed: %s", action, entry, exc)
                continue
            LOGGER.info("file manager: %s %s (unchanged for %.1f days)", action, entry, age / 86400)
            metrics.ARCHIVED_FILES.labels(action).inc()
            done.append((action, entry))
        return done

    def plan(self, now: float) -> list[tuple[str, Path, float]]:
        """Which rule applies to which entry of the log dir: ``(action, path, age in seconds)``."""
        root = self.config.job_event_log_dir
        if not root.is_dir():
            return []
        planned = []
        for entry in sorted(root.iterdir()):
            try:
                rule = self._rule(entry, now)
            except OSError as exc:  # vanished meanwhile, or unreadable
                LOGGER.warning("file manager: cannot inspect %s: %s", entry, exc)
                continue
            if rule is not None:
                planned.append((rule[0], entry, rule[1]))
        return planned

    def _rule(self, entry: Path, now: float) -> tuple[str, float] | None:
        name = entry.name
        if name.startswith("."):
            return None
        cfg = self.config
        if entry.is_dir():
            if name.startswith(TASKFORCE_DIR_PREFIX):
                age = now - newest_mtime(entry)
                return (ARCHIVE_TASKFORCE_DIR, age) if age > cfg.taskforce_dirs_expiry else None
            return None
        age = now - entry.stat().st_mtime
        if name.endswith(JEL_SUFFIX):
            if age > cfg.jel_expiry_long:
                return COMPRESS_LOG, age
            return (COMPRESS_LOG_IF_UNUSED, age) if age > cfg.jel_expiry_short else None
        if name.endswith(JEL_SUFFIX + GZ_SUFFIX):
            return (DELETE_LOG_ARCHIVE, age) if age > cfg.jel_archive_delete_expiry else None
        if name.startswith(TASKFORCE_DIR_PREFIX) and name.endswith(TAR_SUFFIX):
            return (DELETE_TASKFORCE_ARCHIVE, age) if age > cfg.taskforce_dirs_tar_expiry else None
        return None

    async def _log_in_use(self, path: Path) -> bool:
        """Whether a taskforce of this schedd that is not condor-complete still uses the log (True if unsure)."""
        try:
            found = await self.wms.query_taskforces(
                {
                    "schedd": self.config.schedd,
                    "job_event_log_fpath": str(path),
                    "phase": {"$ne": "condor-complete"},
                },
                ["taskforce_uuid"],
            )
        except WMSError as exc:
            LOGGER.warning("file manager: cannot tell whether %s is in use (%s); keeping it", path, exc)
            return True
        return bool(found)


def newest_mtime(directory: Path) -> float:
    """Latest modification time of the dir or anything inside it."""
    newest = directory.stat().st_mtime
    for parent, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def gzip_file(path: Path) -> Path:
    """``path`` -> ``path.gz`` (atomically), then remove ``path``."""
    target = path.with_name(path.name + GZ_SUFFIX)
    with path.open("rb") as src, atomic_writer(target) as out:
        with gzip.GzipFile(filename=path.name, fileobj=out, mode="wb") as gz:
            shutil.copyfileobj(src, gz, 1 << 20)
    path.unlink()
    return target


def tar_dir(directory: Path) -> Path:
    """``dir`` -> ``dir.tar.gz`` (atomically), then remove ``dir``."""
    target = directory.with_name(directory.name + TAR_SUFFIX)
    with atomic_writer(target, mode=0o600) as out:
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            tar.add(directory, arcname=directory.name)
    shutil.rmtree(directory)
    return target


ACTIONS: dict[str, Callable[[Path], object]] = {
    COMPRESS_LOG: gzip_file,
    DELETE_LOG_ARCHIVE: Path.unlink,
    ARCHIVE_TASKFORCE_DIR: tar_dir,
    DELETE_TASKFORCE_ARCHIVE: Path.unlink,
}
