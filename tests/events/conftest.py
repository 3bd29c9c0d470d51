"""Tests of issue 15's event accounting (failed events, elastic workers) and issue 18's token renewal across WMS,
TMS and pilot. ``tests/mqs`` joins the import path so that its broker helpers (``mqs_helpers``) import here."""

from __future__ import annotations

import sys
from pathlib import Path

MQS_TESTS = Path(__file__).resolve().parents[1] / "mqs"
if str(MQS_TESTS) not in sys.path:
    sys.path.insert(0, str(MQS_TESTS))
