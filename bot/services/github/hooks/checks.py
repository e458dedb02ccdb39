"""`check_suite` and `check_run` completed: a failure or a timeout is CI_FAILED and a suite's
success CI_PASSED, on the issues the projection links to the check's PRs (a check carries no
PR body). A single run's success says nothing, since another run of its suite may still fail:
the suite's completion reports it. Other conclusions (neutral, skipped, cancelled, ...) say
nothing either. `status` maps to no event; it only asks the merge gate (WebhookService).
"""

from __future__ import annotations

from bot.integrations.webhook_router import Event, Router
from bot.services.github.hooks.delivery import Delivery

router = Router()

CI_FAILURES = frozenset({"failure", "timed_out"})


@router.register("check_suite", action="completed")
@router.register("check_run", action="completed")
async def check_completed(event: Event, delivery: Delivery) -> None:
    check = event.data.get(event.event) or {}
    conclusion = str(check.get("conclusion") or "")
    if conclusion in CI_FAILURES:
        event_type = "CI_FAILED"
    elif conclusion == "success" and event.event == "check_suite":
        event_type = "CI_PASSED"
    else:
        return
    for pr in check.get("pull_requests") or []:
        pr_number = int(pr.get("number") or 0)
        for issue in delivery.pr_issues.get(pr_number, ()):
            data = {"repo": delivery.repo, "issueNumber": issue, "prNumber": pr_number}
            delivery.record(event, event_type, data)
