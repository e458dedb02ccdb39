"""`pull_request` and `pull_request_review`: a PR opened that says `Closes #N` (any of GitHub's
closing keywords, also `owner/repo#N`) is PR_CREATED on issue N; a PR merged is MERGED on the
issues it closes or the projection links to it (a PR closed unmerged says nothing); a review
approving or requesting changes is REVIEW_PASSED or REVIEW_DISPUTED there (a comment, nothing).
"""

from __future__ import annotations

from bot.integrations.webhook_router import Event, Router
from bot.services.github.hooks.delivery import Delivery
from bot.services.work.pull_requests import closing_references

router = Router()

REVIEW_EVENTS = {"approved": "REVIEW_PASSED", "changes_requested": "REVIEW_DISPUTED"}


@router.register("pull_request", action="opened")
async def opened(event: Event, delivery: Delivery) -> None:
    pr = event.data.get("pull_request") or {}
    number = int(pr.get("number") or 0)
    data = {"prNumber": number, "url": str(pr.get("html_url") or "")[:1_000]}
    targets = closing_references(pr.get("body"), delivery.repo)
    delivery.record_on(event, "PR_CREATED", targets, data)


@router.register("pull_request", action="closed")
async def closed(event: Event, delivery: Delivery) -> None:
    pr = event.data.get("pull_request") or {}
    number = int(pr.get("number") or 0)
    data = {"prNumber": number, "url": str(pr.get("html_url") or "")[:1_000]}
    if pr.get("merged"):
        delivery.record_on(event, "MERGED", delivery.pr_targets(pr), data)


@router.register("pull_request_review", action="submitted")
async def reviewed(event: Event, delivery: Delivery) -> None:
    state = str((event.data.get("review") or {}).get("state") or "").lower()
    event_type = REVIEW_EVENTS.get(state)
    if event_type is None:
        return
    pr = event.data.get("pull_request") or {}
    data = {"prNumber": int(pr.get("number") or 0), "url": str(pr.get("html_url") or "")}
    delivery.record_on(event, event_type, delivery.pr_targets(pr), data)
