"""Where things are, and the settings the function runs with in the tests."""

from __future__ import annotations

from pathlib import Path

from tests.support.identity import AUDIENCE, ISSUER, JWKS_URL
from tests.support.internet import OPENAI_BASE

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"  # the sample events, as `sam local invoke` reads them
PLACEHOLDER = "REPLACE_WITH_A_TOKEN_FROM_make_token"  # where an event's token goes
# Where an event's door secret goes (what the page's distribution adds: api/door.py).
DOOR_PLACEHOLDER = "REPLACE_WITH_THE_ORIGIN_SECRET"
FUNCTION_DIR = ROOT / "functions"  # the CodeUri (tests/support/__init__.py puts it on the path)

TABLE = "quota-table"
SCHEDULE_GROUP = "token-vendor-calls"
SECRET_ID = "openai-key"
ORIGIN = "https://app.example.com"
BASE_ENV = {
    "OPENAI_SECRET_ID": SECRET_ID,
    "OPENAI_BASE_URL": OPENAI_BASE,
    "QUOTA_TABLE": TABLE,
    "QUOTAS": "3/minute,10/day",
    "AUTH_ISSUER": ISSUER,
    "AUTH_AUDIENCE": AUDIENCE,
    "AUTH_JWKS_URL": JWKS_URL,
    "ALLOWED_ORIGINS": ORIGIN,
    "AWS_REGION": "us-east-1",
    "CALL_LIMITS": "concurrent=2,minutes/day=60",
    "SCHEDULE_GROUP": SCHEDULE_GROUP,
    "SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/token-vendor-scheduler",
    # The function reads the operator's controls by default; the handler suites count each
    # request's DynamoDB operations without them (the round-trip tests), and
    # tests/integration/test_controls_cost.py measures what turning them on adds.
    "USER_CONTROLS": "off",
}
# A token's scopes for the shipped client-secret profile, which is opt-in (`assistant-direct`).
SECRETS_SCOPES = "openid realtime:mint realtime:client_secrets"
