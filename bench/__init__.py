"""Benchmarks of the WMS, TMS watcher and pilot; run them with ``bench/run`` (see bench/runner.py)."""
