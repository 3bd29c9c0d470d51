"""Persistence for the WMS: the MongoDB store and the embedded wire-protocol server."""

from wms.database import safe_waits

safe_waits.install()
