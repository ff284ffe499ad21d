"""The page shows the signed-in user's plan and what is left of it today (minutes, budget),
from the listing the API already answers; an operator's override shows at the next sign-in; a
blocked user is told they are blocked.
Debian's Chromium under the production CSP, against the local stack with a plans file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devstack.idp import subject_for
from devstack.stack import TABLE, start_stack
from ops.__main__ import main as ops_main
from ops.users import user_id
from tests.support.browser import TIMEOUT, alert, sign_in

pytestmark = [pytest.mark.stack, pytest.mark.browser]

PLANS = {
    "plans": {
        "pro": {
            "title": "Pro",
            "match": ["plan:pro"],
            "call_limits": "concurrent=2,minutes/day=60",
        },
        "free": {
            "title": "Free",
            "call_limits": "concurrent=1,minutes/day=10",
            "spend_limits": "usd/day=0.50",
        },
    }
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    plans = tmp_path_factory.mktemp("plans") / "plans.json"
    plans.write_text(json.dumps(PLANS))
    env = {
        "PLANS_FILE": str(plans),
        "PLAN_CLAIM": "scope",  # the page asks for no plan scope: everyone is on the default
        "DEFAULT_PLAN": "free",
        "SPEND_LIMITS": "usd/day=2.00",
    }
    with start_stack(quotas="20/minute,200/day", extra_env=env, web_flow="calls") as running:
        yield running


def shown(page: Any, element: str, text: str) -> None:
    page.locator(element).filter(has_text=text).wait_for(timeout=TIMEOUT)


def test_the_page_shows_the_plan_and_what_is_left_of_it(page: Any, stack: Any) -> None:
    sign_in(page, stack, "penny")

    shown(page, "#plan", "Free")
    assert page.locator("#plan").get_attribute("title") == "10 minutes a day, $0.50 a day"
    shown(page, "#budget-left", "$0.50")
    assert page.locator("#minutes-left").inner_text() == "10"

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    user = user_id(subject_for("penny"), stack.urls["issuer"])
    args = ["--endpoint", stack.urls["aws"], "--table", TABLE, "override", user]
    # Penny has only looked: the table knows nothing of her yet (--force).
    override = [*args, "spend_limits", "usd/day=3", "--for", "1h", "--force"]
    assert ops_main(override, session=session) == 0

    page.reload()
    shown(page, "#budget-left", "$3.00")
    assert page.locator("#plan").get_attribute("title") == "10 minutes a day, $3.00 a day"
    page.screenshot(path="artifacts/screenshots/plan.png")


def test_a_blocked_user_is_told_so_not_that_they_lack_access(page: Any, stack: Any) -> None:
    sign_in(page, stack, "bianca")
    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    user = user_id(subject_for("bianca"), stack.urls["issuer"])
    block = ["--endpoint", stack.urls["aws"], "--table", TABLE, "block", user, "--force"]
    assert ops_main(block, session=session) == 0

    page.get_by_role("button", name="Start talking").click()

    # 403 user-blocked has its own sentence, not the one for a missing scope.
    assert "The service's operator has blocked this account" in alert(page)
    assert "not allowed to start conversations" not in alert(page)
