"""Background loops of the WMS: queue activation (with queue retirement and the completion of interrupted
deactivations), taskforce launch control (active workflows only), elastic workers (taskforces for events no worker
consumes) and retention."""
