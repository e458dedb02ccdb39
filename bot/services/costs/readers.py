"""What the cost service reads: the usage projections' readers (store/projections.py), as
Protocols, so the ledger can be tested over any rows of the same shape."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Protocol


class UsageFigures(Protocol):
    @property
    def agent_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def day(self) -> date: ...
    @property
    def events(self) -> int: ...
    @property
    def reported_events(self) -> int: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_creation_tokens(self) -> int: ...
    @property
    def cache_creation_1h_tokens(self) -> int: ...
    @property
    def cost_usd(self) -> Decimal: ...


class IssueUsage(Protocol):
    @property
    def stream_id(self) -> str: ...
    @property
    def events(self) -> int: ...
    @property
    def reported_events(self) -> int: ...
    @property
    def tokens(self) -> int: ...
    @property
    def cost_usd(self) -> Decimal: ...
    @property
    def computed_usd(self) -> Decimal | None: ...
    @property
    def best_usd(self) -> Decimal: ...
    @property
    def unpriced_events(self) -> int: ...


Rate = tuple[str, date, date, Decimal, Decimal, Decimal, Decimal, Decimal]


class CostReader(Protocol):
    """The cost readers over the usage projections (usage_daily, usage_by_issue)."""

    async def usage_by_day(
        self, since: date, until: date, agent_id: str | None = None
    ) -> Sequence[UsageFigures]: ...

    async def issue_usage_by_day(self, stream_id: str) -> Sequence[UsageFigures]: ...

    async def top_issues(
        self,
        since: date,
        until: date,
        rates: Sequence[Rate],
        *,
        limit: int = 10,
        agent_id: str | None = None,
    ) -> Sequence[IssueUsage]: ...
