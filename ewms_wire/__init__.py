"""What the TMS and the pilot both speak: chirp attribute names and pilot statuses (:mod:`ewms_wire.chirp`), and
the HTCondor job event log format (:mod:`ewms_wire.job_event_log`), and the names of failed events
(:mod:`ewms_wire.failed_events`)."""
