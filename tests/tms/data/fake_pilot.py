"""A stand-in pilot for local-backend tests: chirps like the pilot, then behaves as ``EWMS_PILOT_TASK_ARGS`` says.

Modes: ``ok`` (Done, exit 0), ``fail`` (FatalError, exit 3), ``sleep`` (run until killed), ``memory`` (hold
~300 MB until killed), ``child`` (start a grandchild ``sleep`` and run until killed), ``pid:<file>`` (write the pids
of itself and a grandchild to <file>, then run until killed).
"""

import os
import subprocess
import sys
import time

from ewms_wire.chirp import ChirpAttr, PilotStatus, format_chirp
from ewms_wire.job_event_log import JobEventLogWriter

log = JobEventLogWriter(os.environ["_EWMS_PILOT_JOB_EVENT_LOG"])
cluster, proc = int(os.environ["_EWMS_PILOT_CLUSTER_ID"]), int(os.environ["_EWMS_PILOT_PROC_ID"])
mode = os.environ.get("EWMS_PILOT_TASK_ARGS", "ok")


def chirp(attr, value):
    log.generic(cluster, proc, format_chirp(attr, value))


chirp(ChirpAttr.STATUS, PilotStatus.STARTED.value)
chirp(ChirpAttr.STATUS, PilotStatus.TASKING.value)
chirp(ChirpAttr.TASKS_TOTAL, 1)
if mode == "ok":
    chirp(ChirpAttr.TASKS_SUCCESS, 1)
    chirp(ChirpAttr.STATUS, PilotStatus.DONE.value)
    sys.exit(0)
if mode == "fail":
    chirp(ChirpAttr.TASKS_FAILED, 1)
    chirp(ChirpAttr.ERROR, "task failed (exit code 3): fake failure")
    chirp(ChirpAttr.STATUS, PilotStatus.FATAL_ERROR.value)
    sys.exit(3)
if mode == "memory":
    hog = bytearray(300 * 1024 * 1024)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
if mode == "child" or mode.startswith("pid:"):
    child = subprocess.Popen(["sleep", "60"])
    if mode.startswith("pid:"):
        with open(mode[4:], "w") as f:
            f.write(f"{os.getpid()} {child.pid}\n")
time.sleep(60)
