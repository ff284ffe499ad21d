"""Helpers shared by the suites: the one home of what more than one test module uses. Test
modules and conftests import from here, never from one another (tests/unit/test_test_layout.py).

Importing any of it puts the function's code (the CodeUri, `functions/`) on the path, as
Lambda does: `token_vendor` imports the way it does there, from a test or from bench."""

from __future__ import annotations

import sys
from pathlib import Path

_FUNCTION_DIR = str(Path(__file__).resolve().parents[2] / "functions")
if _FUNCTION_DIR not in sys.path:
    sys.path.insert(0, _FUNCTION_DIR)
