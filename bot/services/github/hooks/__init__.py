"""Which events a GitHub delivery implies on its face, one gidgethub Router per event family
(as bedevere does), composed here once. Pure: the hooks read the payload and fill a Delivery;
recording it, and asking the projection whether each event is news, is WebhookService's.

Each delivery reaches at most one hook at each level (tests/github/test_webhooks.py checks):
its events are keyed by their index, so their order must not depend on the router's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.integrations.webhook_router import Event, Router
from bot.services.github.hooks import checks, issues, pull_requests, push
from bot.services.github.hooks.delivery import Delivery, Mapped
from bot.services.work.pull_requests import in_scope
from bot.settings import Settings

__all__ = ["Delivery", "Mapped", "read_delivery", "router"]

router = Router(issues.router, pull_requests.router, checks.router, push.router)


async def read_delivery(
    event_name: str,
    payload: Mapping[str, Any],
    settings: Settings,
    *,
    pr_issues: Mapping[int, Sequence[int]] | None = None,
    delivery_id: str = "",
) -> Delivery:
    """What a delivery implies before checking the projection; nothing for a repo we do not
    manage, for `ping`, or for an event or action no hook follows.

    `pr_issues` maps PR numbers of the delivery's repo to the issues the projection records
    for them (see webhooks.pull_request_numbers); without it, PR events rely on the PR body.
    """
    repo = (payload.get("repository") or {}).get("full_name")
    delivery = Delivery(repo if isinstance(repo, str) else "", settings, pr_issues or {})
    if not isinstance(repo, str) or not in_scope(repo, settings):
        return delivery
    action = payload.get("action")
    if action is not None and not isinstance(action, str):
        # GitHub's action is a string; any other value matches no action's hook (and one that
        # cannot be hashed would break the router's lookup).
        payload = {key: value for key, value in payload.items() if key != "action"}
    await router.dispatch(Event(payload, event=event_name, delivery_id=delivery_id), delivery)
    return delivery
