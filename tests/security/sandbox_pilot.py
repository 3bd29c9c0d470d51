"""A stand-in pilot for the sandbox tests: chirps like the pilot, runs ``EWMS_PILOT_TASK_ARGS`` as its task (a shell
command, as a task would run under the pilot), then tries to forge events of another job, and exits with the task's
exit code."""

import os
import subprocess
import sys

from ewms_wire.chirp import ChirpAttr, PilotStatus, format_chirp
from ewms_wire.job_event_log import JobEventLogWriter

log = JobEventLogWriter(os.environ["_EWMS_PILOT_JOB_EVENT_LOG"])
cluster, proc = int(os.environ["_EWMS_PILOT_CLUSTER_ID"]), int(os.environ["_EWMS_PILOT_PROC_ID"])
log.generic(cluster, proc, format_chirp(ChirpAttr.STATUS, PilotStatus.STARTED.value))
code = subprocess.run(["/bin/sh", "-c", os.environ["EWMS_PILOT_TASK_ARGS"]]).returncode
log.terminated(cluster + 1000, 0, 0)  # a forged end of some other job
log.held(cluster, proc, "forged hold", 1)  # and a forged hold of this one
status = PilotStatus.DONE if code == 0 else PilotStatus.FATAL_ERROR
log.generic(cluster, proc, format_chirp(ChirpAttr.STATUS, status.value))
sys.exit(code)
