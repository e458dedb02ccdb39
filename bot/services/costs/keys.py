"""`/keys verify`: is every agent's spend attributable to its own Anthropic API key?

It is the check people used to make by hand in the Console, against CONDUCTOR_AGENT_KEYS: each
agent has a key of its own that exists, is active, and carries the usage our ledger counts for
that agent. What fails the check is listed in docs/deployment.md. Without the Admin API a check
is "could not verify", never a pass: an unchecked key is not a good one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal, Protocol

from bot.integrations.anthropic_admin import AdminApiError, AnthropicAdmin, ApiKey, KeyUsage
from bot.services.costs.figures import Tokens
from bot.services.costs.ledger import CostService

TOLERANCE_RATIO = 0.02
TOLERANCE_TOKENS = 1_000
DEFAULT_DAYS = 7

Status = Literal["pass", "fail", "warn", "unknown"]
MARK: dict[Status, str] = {"pass": "✅", "fail": "❌", "warn": "⚠️", "unknown": "❔"}


class AdminApi(Protocol):
    async def list_api_keys(self) -> list[ApiKey]: ...
    async def messages_usage(
        self, starting_at: datetime, ending_at: datetime
    ) -> list[KeyUsage]: ...


@dataclass(frozen=True)
class KeyCheck:
    status: Status
    text: str

    @property
    def line(self) -> str:
        return f"{MARK[self.status]} {self.text}"


@dataclass
class KeyReport:
    """The outcome: `ok` only when every check ran and passed."""

    days: int
    checks: list[KeyCheck] = field(default_factory=list)

    def add(self, status: Status, text: str) -> None:
        self.checks.append(KeyCheck(status, text))

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.status in ("pass", "warn") for c in self.checks)

    @property
    def verified(self) -> bool:
        """Every check could run (whatever its outcome)."""
        return all(c.status != "unknown" for c in self.checks)

    @property
    def headline(self) -> str:
        if self.ok:
            return f"API keys verified: every agent uses its own key (last {self.days} days)"
        failures = sum(c.status == "fail" for c in self.checks)
        if failures:
            return f"API key check failed: {failures} problem{'s' if failures > 1 else ''} found"
        return "API keys could not be verified"

    @property
    def lines(self) -> list[str]:
        return [c.line for c in self.checks]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verified": self.verified,
            "headline": self.headline,
            "days": self.days,
            "checks": [{"status": c.status, "text": c.text} for c in self.checks],
        }


def _within(ours: int, theirs: int) -> bool:
    return abs(ours - theirs) <= max(TOLERANCE_TOKENS, TOLERANCE_RATIO * max(ours, theirs))


def _n(tokens: int) -> str:
    return f"{tokens:,}"


async def verify_keys(
    costs: CostService, *, days: int = DEFAULT_DAYS, admin: AdminApi | None = None
) -> KeyReport:
    """Check the agents' API keys against the configuration, the Admin API and the ledger."""
    context = costs.context
    settings = context.settings
    report = KeyReport(days)
    mapping = dict(settings.agent_keys)
    since, until = costs.window(days)

    # The ledger: tokens per agent in the window (input + output + cache reads and writes).
    ledger: dict[str, int] = defaultdict(int)
    for row in await costs.reader.usage_by_day(since, until):
        ledger[row.agent_id] += Tokens.of(row).total
    known = set(mapping) | set(settings.agent_budgets_usd) | {a for a, t in ledger.items() if t}

    if not known:
        report.add("unknown", "no agents configured (CONDUCTOR_AGENT_KEYS) and no usage recorded")
    for agent in sorted(known - set(mapping)):
        seen = f" ({_n(ledger[agent])} tokens in the ledger)" if ledger.get(agent) else ""
        report.add("fail", f"{agent} has no API key mapped in CONDUCTOR_AGENT_KEYS{seen}")

    by_ref: dict[str, list[str]] = defaultdict(list)
    for agent, ref in mapping.items():
        by_ref[ref].append(agent)
    for ref, agents in sorted(by_ref.items()):
        if len(agents) > 1:
            report.add("fail", f"{' and '.join(sorted(agents))} share the API key {ref!r}")

    if admin is None:
        if settings.anthropic_admin_key is None:
            report.add("unknown", "could not verify: ANTHROPIC_ADMIN_KEY not set")
            return report
        admin = AnthropicAdmin(
            context.http,
            settings.anthropic_admin_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
        )
    start = datetime.combine(since, time(0), UTC)
    end = datetime.combine(until + timedelta(days=1), time(0), UTC)
    try:
        keys = await admin.list_api_keys()
        usage: Sequence[KeyUsage] = await admin.messages_usage(start, end)
    except AdminApiError as exc:
        report.add("unknown", f"could not verify: {exc}")
        return report

    # Resolve each agent's reference (a key id, else a unique key name) to a key.
    by_id = {k.id: k for k in keys}
    by_name: dict[str, list[ApiKey]] = defaultdict(list)
    for k in keys:
        by_name[k.name].append(k)
    resolved: dict[str, ApiKey] = {}
    for agent, ref in sorted(mapping.items()):
        key = by_id.get(ref)
        if key is None:
            named = by_name.get(ref, [])
            if len(named) > 1:
                report.add("fail", f"{agent}: {len(named)} API keys are named {ref!r}; use its id")
                continue
            key = named[0] if named else None
        if key is None:
            report.add("fail", f"{agent}: API key {ref!r} does not exist in the organisation")
            continue
        resolved[agent] = key
        if key.status != "active":
            report.add("fail", f"{agent}: API key {key.name!r} ({key.id}) is {key.status}")
    owners: dict[str, list[str]] = defaultdict(list)
    for agent, key in resolved.items():
        owners[key.id].append(agent)
    for key_id, agents in sorted(owners.items()):
        if len(agents) > 1 and mapping[agents[0]] != mapping[agents[1]]:
            # Same key reached through an id and a name: not caught by the mapping check above.
            report.add("fail", f"{' and '.join(sorted(agents))} share the API key {key_id}")

    tokens_by_key: dict[str | None, int] = defaultdict(int)
    for used in usage:
        tokens_by_key[used.api_key_id] += used.total_tokens

    for agent, key in sorted(resolved.items()):
        theirs = tokens_by_key.get(key.id, 0)
        ours = ledger.get(agent, 0)
        label = f"{agent} ({key.name or key.id})"
        if ours and not theirs:
            report.add(
                "fail",
                f"{label}: the ledger has {_n(ours)} tokens but its key shows no usage — "
                "is the agent using another key?",
            )
        elif theirs and not ours:
            report.add(
                "fail",
                f"{label}: its key used {_n(theirs)} tokens but the agent reported none",
            )
        elif not _within(ours, theirs):
            report.add(
                "fail",
                f"{label}: the key used {_n(theirs)} tokens, the ledger says {_n(ours)} "
                f"(more than {TOLERANCE_RATIO:.0%} or {_n(TOLERANCE_TOKENS)} tokens apart)",
            )
        elif key.status == "active":
            report.add(
                "pass",
                f"{label}: own active key; {_n(theirs)} tokens, ledger {_n(ours)}",
            )

    mapped_ids = {key.id for key in resolved.values()}
    for used_id, tokens in sorted(tokens_by_key.items(), key=lambda item: str(item[0])):
        if used_id in mapped_ids or not tokens:
            continue
        if used_id is None:
            report.add(
                "warn",
                f"{_n(tokens)} tokens used without an API key (Console/Workbench)",
            )
            continue
        stray = by_id.get(used_id)
        name = f"{stray.name!r} ({used_id})" if stray else used_id
        report.add(
            "fail", f"usage on API key {name} that no agent is mapped to: {_n(tokens)} tokens"
        )
    return report
