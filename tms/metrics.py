"""Prometheus metrics of the TMS (served on ``TMS_METRICS_PORT`` when it is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SUBMITTED_JOBS = Counter("ewms_tms_submitted_jobs_total", "Pilot jobs submitted")
SUBMISSIONS = Counter("ewms_tms_submissions_total", "Taskforce submissions", ["outcome"])
REMOVALS = Counter("ewms_tms_removals_total", "Taskforce removals", ["outcome"])
EVENTS_READ = Counter("ewms_tms_job_events_read_total", "Job events read from event logs")
CORRUPT_EVENTS = Gauge("ewms_tms_job_events_skipped", "Unreadable events skipped in the logs being followed")
STATUS_REPORTS = Counter("ewms_tms_status_reports_total", "Bulk status reports to the WMS", ["outcome"])
JOB_LOGS = Counter("ewms_tms_job_logs_total", "Ended jobs' output tails shipped to the WMS", ["outcome"])
LOOP_ERRORS = Counter("ewms_tms_loop_errors_total", "Unexpected errors per loop", ["loop"])
ARCHIVED_FILES = Counter("ewms_tms_housekeeping_actions_total", "File manager actions", ["action"])
