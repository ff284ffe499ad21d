"""The operator's command line: today's usage per user, one user's state, blocks, overrides
of a user's limits, live calls and ending one, against the deployed stack's table (the
operator's AWS credentials) or the local stack's (`make dev`).

    make ops ARGS="usage --top 10 --format csv"
    python -m ops --stack realtime-token-vendor user 3f2a...

Every write is the functions' own: the control item (core.controls) for blocks, overrides
and ending a call (which its watcher then ends through the one ending path, core.ending), so
nothing here can leave the call or spend ledgers inconsistent.
"""

from __future__ import annotations

import sys
from pathlib import Path

# The functions' CodeUri, as Lambda puts it on the path: `token_vendor` is imported from there.
_FUNCTIONS = str(Path(__file__).resolve().parents[1] / "functions")
if _FUNCTIONS not in sys.path:
    sys.path.insert(0, _FUNCTIONS)
