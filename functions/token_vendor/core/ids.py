"""The two ids that travel together through every module, as distinct types.

A user is the hash of the token's issuer and subject (`api.auth.Caller.user_hash`); a call is
OpenAI's id for it (`rtc_…`). Both are strings on the wire and in DynamoDB, so a swapped pair
would type-check as `str`; as `NewType`s it does not, and every function that takes both takes
them by keyword.
"""

from __future__ import annotations

import re
from typing import NewType

UserId = NewType("UserId", str)
CallId = NewType("CallId", str)

# What OpenAI's `Location` may name as a call id, and so every id this service accepts.
CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
