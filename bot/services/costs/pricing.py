"""Model prices by day: the genai-prices database, with an optional local price file on top.

Spend is priced here from the tokens rather than taken on the agents' word. A day's usage is
priced at that day's price (UTC), so a price change never re-prices the past; a model or a day
without a price has none ("cost unknown", never zero); and each Price names its source, so that
every figure can say what priced it. The README's "Costs and prices" is the user's view.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import yaml
from genai_prices.types import TieredPrices
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MILLION = Decimal(1_000_000)
DATABASE_SOURCE = f"genai-prices {genai_prices.__version__}"
FILE_SOURCE = "CONDUCTOR_PRICES_FILE"


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind, and where the figures came from."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    source: str

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


# --- the local price file (CONDUCTOR_PRICES_FILE) --------------------------------------------

Rate = Decimal


class FilePrice(BaseModel):
    """One dated price of the local file, in force from `effective` (inclusive)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective: date
    input: Rate = Field(ge=0)
    output: Rate = Field(ge=0)
    cache_write_5m: Rate = Field(ge=0)
    cache_write_1h: Rate = Field(ge=0)
    cache_read: Rate = Field(ge=0)

    def price(self) -> Price:
        return Price(
            self.input,
            self.output,
            self.cache_write_5m,
            self.cache_write_1h,
            self.cache_read,
            FILE_SOURCE,
        )


class FileModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    aliases: list[str] = []
    note: str | None = None
    prices: list[FilePrice] = Field(min_length=1)

    @field_validator("prices")
    @classmethod
    def _dated_once(cls, prices: list[FilePrice]) -> list[FilePrice]:
        days = [p.effective for p in prices]
        if len(set(days)) != len(days):
            raise ValueError("two prices share an effective date")
        return sorted(prices, key=lambda p: p.effective)


class PriceFile(BaseModel):
    """The whole local price file, validated: USD per million tokens, per model, dated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: list[FileModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _names_unique(self) -> PriceFile:
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


class PriceFileError(ValueError):
    """The local price file cannot be read or is malformed; the message is one line."""


def load_price_file(path: Path) -> PriceFile:
    """Read and validate a price file (YAML, or JSON, which is YAML too).

    Raises PriceFileError with one line saying what is wrong and where.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceFileError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        data: Any = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PriceFileError(f"{path} is not valid YAML/JSON: {first}") from None
    try:
        return PriceFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        raise PriceFileError(f"{path}: {where + ': ' if where else ''}{message}") from None


def normalise_model(name: str) -> str:
    """`Claude-Haiku-4-5@20251001 ` → `claude-haiku-4-5-20251001` (case, space, Vertex form)."""
    return name.strip().lower().replace("@", "-")


# --- look-ups --------------------------------------------------------------------------------


def _rate(value: Decimal | TieredPrices | None) -> Decimal | None:
    # A tiered price's base: usage is summed per day, so a request's tier is not known.
    return value.base if isinstance(value, TieredPrices) else value


def database_price(model: str, day: date) -> tuple[str | None, Price | None]:
    """genai-prices' id for `model` (None when it does not know it) and its price on `day`
    (UTC; None when it has none). Its bundled data is used as installed: nothing is downloaded.

    A model is found by its name in any provider (`claude-…` is Anthropic's, `gpt-…` OpenAI's),
    its aliases and dated snapshot ids, and the Vertex `model@snapshot` form.

    Cache tokens the database gives no rate of its own are priced as genai-prices prices them:
    a 5-minute or 1-hour write at the plain cache-write rate, else as input; a read as input.
    """
    if not model.strip():
        return None, None
    try:
        found = genai_prices.calc_price(
            genai_prices.Usage(),
            normalise_model(model),
            genai_request_timestamp=datetime.combine(day, time(12), UTC),
        )
    except LookupError:
        return None, None
    prices = found.model_price
    text_input = _rate(prices.input_mtok)
    output = _rate(prices.output_mtok)
    if text_input is None or output is None:
        return found.model.id, None  # not a token-priced model (images, audio, ...)
    write = _rate(prices.cache_write_mtok)
    write_5m = _rate(prices.cache_write_5m_mtok)
    write_1h = _rate(prices.cache_write_1h_mtok)
    read = _rate(prices.cache_read_mtok)
    return found.model.id, Price(
        input=text_input,
        output=output,
        cache_write_5m=next(r for r in (write_5m, write, text_input) if r is not None),
        cache_write_1h=next(r for r in (write_1h, write, text_input) if r is not None),
        cache_read=read if read is not None else text_input,
        source=DATABASE_SOURCE,
    )


class Pricing:
    """Prices per model and day: the local file where it has one, else genai-prices."""

    def __init__(self, overrides: PriceFile | None = None, *, database: bool = True) -> None:
        self.overrides = overrides
        self.database = database
        self._canonical: dict[str, str] = {}
        self._file: dict[str, list[FilePrice]] = {}
        self._days: dict[str, list[date]] = {}
        for entry in overrides.models if overrides else ():
            self._file[entry.model] = entry.prices
            self._days[entry.model] = [p.effective for p in entry.prices]
            for name in (entry.model, *entry.aliases):
                self._canonical[normalise_model(name)] = entry.model
        # (model as recorded, day) → price; bounded by the models in use × the days asked for,
        # so pricing a million events resolves each model once per day of the window.
        self._cache: dict[tuple[str, date], Price | None] = {}

    @classmethod
    def from_file(cls, path: Path | None) -> Pricing:
        """genai-prices, with the local file at `path` on top when given (PriceFileError when
        it cannot be read or is malformed)."""
        return cls(load_price_file(path) if path is not None else None)

    @property
    def sources(self) -> list[str]:
        """Where prices may come from, database first."""
        found = [DATABASE_SOURCE] if self.database else []
        return [*found, FILE_SOURCE] if self.overrides else found

    def _from_file(self, model: str, day: date) -> Price | None:
        name = self._canonical.get(normalise_model(model))
        if name is None:
            return None
        index = bisect.bisect_right(self._days[name], day) - 1
        return self._file[name][index].price() if index >= 0 else None

    def price_for(self, model: str, day: date) -> Price | None:
        """The price in force for `model` on `day`, or None (no price: cost unknown). A file
        entry applies from its `effective` day to the next entry's; before the first, the
        database's price does.

        The file is matched by the name as sent, then by genai-prices' id for it, so a file
        entry for `claude-sonnet-4-6` covers its dated snapshot ids and other spellings too.
        """
        key = (model, day)
        if key in self._cache:
            return self._cache[key]
        price = self._from_file(model, day)
        if price is None and self.database:
            known_as, price = database_price(model, day)
            if known_as is not None:
                price = self._from_file(known_as, day) or price
        self._cache[key] = price
        return price

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

    def periods(self, model: str, since: date, until: date) -> list[tuple[date, date, Price]]:
        """The prices of `model` over [since, until]: (first day, day after the last, price),
        one per run of days with the same price; days without a price are left out."""
        runs: list[tuple[date, date, Price]] = []
        day = since
        while day <= until:
            price = self.price_for(model, day)
            following = day + timedelta(days=1)
            if price is not None:
                if runs and runs[-1][1] == day and runs[-1][2] == price:
                    runs[-1] = (runs[-1][0], following, price)
                else:
                    runs.append((day, following, price))
            day = following
        return runs
