"""Persistence for the WMS: the MongoDB store and the embedded wire-protocol server."""
