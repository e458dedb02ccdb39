"""Claude model prices by day, and what a number of tokens cost.

The table lives in `bot/data/prices.json`: per model, dated prices in USD per million tokens for
input, output, 5-minute and 1-hour cache writes and cache reads. A day's usage is priced at the
entry in force that day, so a price change never re-prices the past. A model (or a day) the
table does not know has no price: `cost()` returns None, "cost unknown", never zero.

Model names are matched after normalising case and the Vertex `model@snapshot` form; every
alias and dated snapshot id of a model maps to the same prices.
"""

from __future__ import annotations

import bisect
import functools
import json
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MILLION = Decimal(1_000_000)

Rate = Decimal


class Price(BaseModel):
    """USD per million tokens of each kind, in force from `effective` (inclusive)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective: date
    input: Rate = Field(ge=0)
    output: Rate = Field(ge=0)
    cache_write_5m: Rate = Field(ge=0)
    cache_write_1h: Rate = Field(ge=0)
    cache_read: Rate = Field(ge=0)

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_5m_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> Decimal:
        """The exact USD cost of these tokens at this price."""
        micro = (
            input_tokens * self.input
            + output_tokens * self.output
            + cache_read_tokens * self.cache_read
            + cache_write_5m_tokens * self.cache_write_5m
            + cache_write_1h_tokens * self.cache_write_1h
        )
        return micro / MILLION


class ModelPrices(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    aliases: list[str] = []
    note: str | None = None
    prices: list[Price] = Field(min_length=1)

    @field_validator("prices")
    @classmethod
    def _dated_once(cls, prices: list[Price]) -> list[Price]:
        days = [p.effective for p in prices]
        if len(set(days)) != len(days):
            raise ValueError("two prices share an effective date")
        return sorted(prices, key=lambda p: p.effective)


class PriceTable(BaseModel):
    """The whole of prices.json, validated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    currency: Literal["USD"]
    unit: Literal["per million tokens"]
    source: str
    checked: date
    notes: list[str] = []
    models: list[ModelPrices] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> PriceTable:
        seen: dict[str, str] = {}
        for entry in self.models:
            for name in (entry.model, *entry.aliases):
                key = normalise_model(name)
                if key in seen:
                    raise ValueError(
                        f"model name {name!r} is listed under both {seen[key]!r} and "
                        f"{entry.model!r}"
                    )
                seen[key] = entry.model
        return self


def normalise_model(name: str) -> str:
    """`Claude-Haiku-4-5@20251001 ` → `claude-haiku-4-5-20251001` (case, space, Vertex form)."""
    return name.strip().lower().replace("@", "-")


class Pricing:
    """Look-ups over a validated price table."""

    def __init__(self, table: PriceTable) -> None:
        self.table = table
        self._canonical: dict[str, str] = {}
        self._prices: dict[str, list[Price]] = {}
        self._days: dict[str, list[date]] = {}
        for entry in table.models:
            self._prices[entry.model] = entry.prices
            self._days[entry.model] = [p.effective for p in entry.prices]
            for name in (entry.model, *entry.aliases):
                self._canonical[normalise_model(name)] = entry.model

    @classmethod
    def from_json(cls, text: str | bytes) -> Pricing:
        """Parse and validate a price table (raises pydantic.ValidationError when malformed)."""
        data: Any = json.loads(text)
        return cls(PriceTable.model_validate(data))

    @classmethod
    def bundled(cls) -> Pricing:
        """The table shipped in bot/data/prices.json (read once per process, on first use)."""
        return _bundled()

    def canonical(self, model: str) -> str | None:
        """The table's name for a model, alias or snapshot id; None when unknown."""
        return self._canonical.get(normalise_model(model))

    def price_for(self, model: str, day: date) -> Price | None:
        """The price in force for `model` on `day`, or None (unknown model, or before its
        first price)."""
        name = self.canonical(model)
        if name is None:
            return None
        index = bisect.bisect_right(self._days[name], day) - 1
        return self._prices[name][index] if index >= 0 else None

    def cost(
        self,
        model: str,
        day: date,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_5m_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> Decimal | None:
        """USD for these tokens on `day`, or None when the price is unknown (never zero)."""
        price = self.price_for(model, day)
        if price is None:
            return None
        return price.cost(
            input_tokens,
            output_tokens,
            cache_read_tokens,
            cache_write_5m_tokens,
            cache_write_1h_tokens,
        )

    def periods(self, model: str) -> list[tuple[date, date | None, Price]]:
        """Each price of a model with the day it starts and the day the next one starts."""
        name = self.canonical(model)
        if name is None:
            return []
        prices = self._prices[name]
        return [
            (p.effective, prices[i + 1].effective if i + 1 < len(prices) else None, p)
            for i, p in enumerate(prices)
        ]


@functools.cache
def _bundled() -> Pricing:
    text = resources.files("bot").joinpath("data", "prices.json").read_text(encoding="utf-8")
    return Pricing.from_json(text)


def price_for(model: str, day: date) -> Price | None:
    """`Pricing.price_for` over the bundled table."""
    return Pricing.bundled().price_for(model, day)


def cost(
    model: str,
    day: date,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
) -> Decimal | None:
    """`Pricing.cost` over the bundled table: USD, or None when the price is unknown."""
    return Pricing.bundled().cost(
        model,
        day,
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_5m_tokens,
        cache_write_1h_tokens,
    )
