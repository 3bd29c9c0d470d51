"""Background loops of the WMS: queue activation (with queue retirement and the completion of interrupted
deactivations), taskforce launch control (active workflows only), retention and the end of stopped taskforces that
never got a cluster; run (``runner.py``) by the one WMS instance that holds the daemon lease (``lease.py``)."""
