"""Routing: which agents may take an issue, and why an issue waits.

An issue goes to the agents of its repo's route, which the repo's `.rig-agent.yaml`, the
runtime's naming convention and CONDUCTOR_AGENT_ROUTES decide (README, "Routing"). `Router` is
pure (settings in, answers out), so the pull path's claim and the push dispatcher ask one table;
`RoutingService` adds the projections: a stored issue's route, why it waits, and which queued
issues no agent can take.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.context import AppContext
from bot.settings import Settings
from store.projections import Agent, Issue, RepoConfig

REVIEW_ROUTE = "review"
MACOS_ROUTE = "ios-macos"
_DEV_E = re.compile(r"^dev-e-(.+)$")
# Agent statuses that mean "working on something" (the runtime's heartbeat and our projection).
BUSY_STATUSES = frozenset({"working", "busy", "assigned"})


def route_key(config: Mapping[str, Any]) -> str:
    """The route a validated `.rig-agent.yaml` selects: its stack, or `ios-macos`."""
    stack = str(config["stack"])
    if stack == "ios" and "requires-macos" in config.get("escalate", ()):
        return MACOS_ROUTE
    return stack


def convention(key: str) -> tuple[str, ...]:
    """The agents a route goes to when CONDUCTOR_AGENT_ROUTES does not name it."""
    if key == REVIEW_ROUTE:
        return ("review-e",)
    if key == MACOS_ROUTE:
        return ("ibuild-e",)
    return (f"dev-e-{key}",)


@dataclass(frozen=True)
class Route:
    """Where an issue may go: `agents` None means any agent."""

    key: str | None
    agents: tuple[str, ...] | None
    why: str

    def admits(self, agent_id: str) -> bool:
        return self.agents is None or agent_id in self.agents


@dataclass(frozen=True)
class Scope:
    """What one agent may take: issues of repos with these route keys, and `unrouted` ones."""

    keys: tuple[str, ...]
    unrouted: bool


class Router:
    """The routing table: CONDUCTOR_AGENT_ROUTES over the convention, and the default stack."""

    def __init__(self, routes: Mapping[str, Sequence[str]], default_stack: str | None) -> None:
        self.routes = {key: tuple(agents) for key, agents in routes.items()}
        self.default_stack = default_stack

    @classmethod
    def from_settings(cls, settings: Settings) -> Router:
        return cls(settings.agent_routes, settings.default_stack)

    def agents_for(self, key: str) -> tuple[str, ...]:
        return self.routes.get(key) or convention(key)

    def route(self, config: RepoConfig | None) -> Route:
        """The route of a repo's issues, from its configuration as the projection has it."""
        if config is not None and config.route_key is not None:
            key = config.route_key
            source = "its .rig-agent.yaml"
            if key == MACOS_ROUTE:
                source += " (stack ios, escalate requires-macos)"
            else:
                source += f" (stack {key})"
            return Route(key, self.agents_for(key), f"route {key!r} from {source}")
        if config is None:
            what = "its .rig-agent.yaml was not read yet"
        elif config.error is not None:
            what = "no usable .rig-agent.yaml"
        else:
            what = "no .rig-agent.yaml"
        if self.default_stack is not None:
            key = self.default_stack
            return Route(key, self.agents_for(key), f"{what}: the default stack {key!r}")
        return Route(None, None, f"{what}: any agent may take it")

    def review_route(self) -> Route:
        """Pull requests go to the reviewers (`review-e` by convention)."""
        return Route(REVIEW_ROUTE, self.agents_for(REVIEW_ROUTE), "pull requests go to review")

    def scope(self, agent_id: str) -> Scope:
        """The route keys an agent serves, as the claim's queue filter wants them (an instance
        id, `dev-e-node/abc12`, serves its agent's routes)."""
        agent_id = agent_id.split("/")[0]
        keys = {key for key, agents in self.routes.items() if agent_id in agents}
        if not keys:
            # An agent the setting does not name serves its conventional route, if free.
            match = _DEV_E.match(agent_id)
            if match and match.group(1) not in self.routes:
                keys.add(match.group(1))
            if agent_id == "ibuild-e" and MACOS_ROUTE not in self.routes:
                keys.add(MACOS_ROUTE)
        keys.discard(REVIEW_ROUTE)
        unrouted = self.default_stack is None or self.default_stack in keys
        return Scope(tuple(sorted(keys)), unrouted)

    def may_review(self, agent_id: str) -> bool:
        """Whether an agent may claim reviews: anyone, until CONDUCTOR_AGENT_ROUTES names the
        reviewers (today's reviewers poll /api/reviews/next under their own names)."""
        reviewers = self.routes.get(REVIEW_ROUTE)
        return reviewers is None or agent_id.split("/")[0] in reviewers


@dataclass(frozen=True)
class Verdict:
    """Whether some agent can take an issue on its route, and the sentences that say why."""

    route: Route
    takeable: bool
    reasons: list[str]


def judge(route: Route, agents: Iterable[Agent], now: datetime) -> Verdict:
    """Who on `route` could take an issue now: none known, busy, stale, or free."""
    if route.agents is None:
        return Verdict(route, True, [f"Routing: {route.why}."])
    known = {agent.agent_id: agent for agent in agents if agent.agent_id in route.agents}
    names = ", ".join(route.agents)
    reasons = [f"Routing: {route.why} → {names}."]
    if not known:
        reasons.append(f"No agent for its route: {names} never reported to Conductor-E.")
        return Verdict(route, False, reasons)
    for agent_id in route.agents:
        agent = known.get(agent_id)
        if agent is None:
            reasons.append(f"{agent_id} never reported.")
        elif agent.stale:
            seen = agent.last_heartbeat or agent.last_event_at
            ago = int((now - seen).total_seconds() // 60)
            reasons.append(f"{agent_id} is stale: no heartbeat for {ago} min.")
        elif agent.current_issue or agent.status in BUSY_STATUSES:
            what = f" with {agent.current_issue}" if agent.current_issue else ""
            reasons.append(f"{agent_id} is busy{what}.")
        else:
            reasons.append(f"{agent_id} is free: it gets the top issue of its route when it asks.")
    # A busy or stale agent may still come back (or be woken); only nobody at all is flagged.
    return Verdict(route, True, reasons)


class RoutingService:
    """Routing over the projections: an issue's route, why it waits, what nobody can take."""

    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.router = Router.from_settings(context.settings)

    async def route(self, repo: str) -> Route:
        """Which agents may take an issue of `repo` now (what a push dispatcher asks)."""
        return self.router.route(await self.context.projections.repo_config(repo))

    async def verdicts(self, issues: Sequence[Issue]) -> dict[str, Verdict]:
        """Each issue's route and whether an agent on it could take it, by stream id."""
        if not issues:
            return {}
        projections = self.context.projections
        configs = {
            c.repo: c for c in await projections.repo_configs(sorted({i.repo for i in issues}))
        }
        now = self.context.clock()
        agents = await projections.agents(now, self.context.stale_after)
        return {
            issue.stream_id: judge(self.router.route(configs.get(issue.repo.lower())), agents, now)
            for issue in issues
        }

    async def unroutable(self, issues: Sequence[Issue]) -> dict[str, str]:
        """Queued issues no agent can take (nobody on their route ever reported): the reason."""
        verdicts = await self.verdicts([i for i in issues if i.state == "queued"])
        return no_agent(verdicts)

    async def broken_configs(self) -> list[RepoConfig]:
        """Repos whose latest .rig-agent.yaml is broken (the last good one still applies)."""
        return [c for c in await self.context.projections.repo_configs() if c.error]


def no_agent(verdicts: Mapping[str, Verdict]) -> dict[str, str]:
    """Of judged issues, those no agent can take, with the reason."""
    return {
        stream: verdict.reasons[-1] for stream, verdict in verdicts.items() if not verdict.takeable
    }


def route_label(route: Route) -> str:
    """`python → dev-e-python`, `default → any agent`: a route in a few words."""
    agents = ", ".join(route.agents) if route.agents is not None else "any agent"
    return f"{route.key or 'default'} → {agents}"


def config_note(config: RepoConfig | None) -> str | None:
    """A sentence about a broken configuration, or None when it is fine."""
    if config is None or config.error is None:
        return None
    kept = (
        f"the last good one (route {config.route_key!r}) still applies"
        if config.route_key
        else "no good one was ever read, so the default route applies"
    )
    return f"Its .rig-agent.yaml is broken ({config.error}); {kept}."
