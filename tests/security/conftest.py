"""Fixtures of the hostile-tenant tests: the embedded-MQS fixtures and broker helpers of ``tests/mqs``, shared.

``tests/mqs`` joins the import path so that ``mqs_helpers`` imports here as it does there; its conftest is loaded
under its own module name and its fixtures re-exported (a fresh database per test, an embedded MQS on the
session's private broker).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

MQS_TESTS = Path(__file__).resolve().parents[1] / "mqs"
if str(MQS_TESTS) not in sys.path:
    sys.path.insert(0, str(MQS_TESTS))

_spec = importlib.util.spec_from_file_location("mqs_test_fixtures", MQS_TESTS / "conftest.py")
assert _spec and _spec.loader
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

db = _fixtures.db
mqs_config = _fixtures.mqs_config
make_mqs = _fixtures.make_mqs
mqs = _fixtures.mqs
