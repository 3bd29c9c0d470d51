"""Background loops of the WMS: queue activation (with queue retirement) and taskforce launch control."""
