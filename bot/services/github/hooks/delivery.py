"""What the webhook hooks are handed: one delivery's repo, settings and known PR links, and
where they put the events it implies and the repos whose `.rig-agent.yaml` to re-read.

The hooks are pure: they read the payload and fill a Delivery; WebhookService does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.integrations.webhook_router import Event
from bot.services.work.pull_requests import closing_references, in_scope
from bot.settings import Settings
from store import catalogue
from store.events import NewEvent

SOURCE = "github-webhook"

Mapped = tuple[str, NewEvent]  # (stream id, event)


@dataclass
class Delivery:
    repo: str  # the delivery's repository, one we manage
    settings: Settings
    # PR number -> the issues the projection links to it (in `repo`).
    pr_issues: Mapping[int, Sequence[int]] = field(default_factory=dict)
    events: list[Mapped] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)  # repos whose .rig-agent.yaml to re-read

    def record(self, event: Event, event_type: str, data: dict[str, Any]) -> None:
        """`event_type` on the issue `data` names by its repo and issueNumber."""
        metadata = {"actor": "github", "source": SOURCE, "githubEvent": event.event}
        action = event.data.get("action")
        if action:
            metadata["action"] = action
        stream = catalogue.issue_stream(data["repo"], data["issueNumber"])
        self.events.append((stream, NewEvent(event_type, data, metadata)))

    def record_on(
        self,
        event: Event,
        event_type: str,
        targets: Iterable[tuple[str, int]],
        data: dict[str, Any],
    ) -> None:
        """`event_type` with `data` on each (repo, issue) of `targets` in a repo we manage."""
        for repo, number in targets:
            if in_scope(repo, self.settings):
                self.record(event, event_type, {"repo": repo, "issueNumber": number, **data})

    def pr_targets(self, pr: Mapping[str, Any]) -> list[tuple[str, int]]:
        """The issues a PR closes by its body, then those the projection links to it."""
        targets = closing_references(pr.get("body"), self.repo)
        for number in self.pr_issues.get(int(pr.get("number") or 0), ()):
            if (self.repo, number) not in targets:
                targets.append((self.repo, number))
        return targets
