"""`issues`: the agent-ready label approves an issue and its removal withdraws it; closing,
deleting or transferring it withdraws it; another label on an agent-ready issue may move its
priority. Whether each is news (an issue already approved, one closed by its merged PR) is
for the projection to say, in WebhookService.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.integrations.webhook_router import Event, Router
from bot.services.github.hooks.delivery import Delivery
from bot.settings import Settings
from store.catalogue import priority_from_labels

router = Router()
# The hooks by action, called once the issue is read.
by_action = Router()


@dataclass(frozen=True)
class IssueFacts:
    """What every `issues` delivery is read for, whatever its action."""

    issue: Mapping[str, Any]
    number: int
    labels: list[str]
    ready: bool  # it carries the agent-ready label
    ready_changed: bool  # the label just added or removed is the agent-ready one

    @classmethod
    def read(cls, payload: Mapping[str, Any], settings: Settings) -> IssueFacts | None:
        """The issue of `payload`; None for a pull request (GitHub sends those too) or none."""
        issue = payload.get("issue") or {}
        if "pull_request" in issue or not issue.get("number"):
            return None
        number = int(issue["number"])
        ready = settings.agent_ready_label.lower()
        labels = _label_names(issue)
        changed = str((payload.get("label") or {}).get("name") or "")
        return cls(
            issue,
            number,
            labels,
            any(name.lower() == ready for name in labels),
            changed.lower() == ready,
        )


def _label_names(issue: Mapping[str, Any]) -> list[str]:
    names = []
    for label in issue.get("labels") or []:
        name = label.get("name") if isinstance(label, Mapping) else label
        if isinstance(name, str):
            names.append(name)
    return names


@router.register("issues")
async def issue_event(event: Event, delivery: Delivery) -> None:
    # Read before routing by action, so that a malformed issue is refused whatever the action.
    issue = IssueFacts.read(event.data, delivery.settings)
    if issue is not None:
        await by_action.dispatch(event, issue, delivery)


@by_action.register("issues", action="labeled")
async def labeled(event: Event, issue: IssueFacts, delivery: Delivery) -> None:
    if issue.ready_changed:
        if issue.issue.get("state", "open") == "open":
            _approve(event, issue, delivery)
    elif issue.ready:
        _reprioritise(event, issue, delivery)


@by_action.register("issues", action="unlabeled")
async def unlabeled(event: Event, issue: IssueFacts, delivery: Delivery) -> None:
    if issue.ready_changed:
        label = delivery.settings.agent_ready_label
        _withdraw(event, issue, delivery, f"the {label!r} label was removed on GitHub")
    elif issue.ready:
        _reprioritise(event, issue, delivery)


@by_action.register("issues", action="opened")
@by_action.register("issues", action="reopened")
async def opened(event: Event, issue: IssueFacts, delivery: Delivery) -> None:
    if issue.ready:
        _approve(event, issue, delivery)


@by_action.register("issues", action="closed")
async def closed(event: Event, issue: IssueFacts, delivery: Delivery) -> None:
    reason = issue.issue.get("state_reason") or "completed"
    _withdraw(event, issue, delivery, f"closed on GitHub ({reason})")


@by_action.register("issues", action="deleted")
async def deleted(event: Event, issue: IssueFacts, delivery: Delivery) -> None:
    _withdraw(event, issue, delivery, "deleted on GitHub")


@by_action.register("issues", action="transferred")
async def transferred(event: Event, issue: IssueFacts, delivery: Delivery) -> None:
    _withdraw(event, issue, delivery, "transferred to another repository on GitHub")


def _approve(event: Event, issue: IssueFacts, delivery: Delivery) -> None:
    data = {
        "repo": delivery.repo,
        "issueNumber": issue.number,
        "title": str(issue.issue.get("title") or "")[:1_000],
        "url": str(issue.issue.get("html_url") or "")[:1_000],
        "labels": [name[:100] for name in issue.labels[:100]],
        "priority": priority_from_labels(issue.labels, delivery.settings.priority_labels),
    }
    delivery.record(event, "ISSUE_APPROVED", data)


def _reprioritise(event: Event, issue: IssueFacts, delivery: Delivery) -> None:
    data = {
        "repo": delivery.repo,
        "issueNumber": issue.number,
        "priority": priority_from_labels(issue.labels, delivery.settings.priority_labels),
        "labels": [name[:100] for name in issue.labels[:100]],
    }
    delivery.record(event, "PRIORITY_CHANGED", data)


def _withdraw(event: Event, issue: IssueFacts, delivery: Delivery, reason: str) -> None:
    data = {"repo": delivery.repo, "issueNumber": issue.number, "reason": reason}
    delivery.record(event, "ISSUE_WITHDRAWN", data)
