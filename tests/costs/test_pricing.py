"""The price table: every listed model and token kind, aliases, dated prices, unknown models."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from bot.services import pricing
from bot.services.pricing import Pricing

DAY = date(2026, 3, 10)

# (model as an agent might send it, input, output, 5m write, 1h write, cache read) in USD/MTok
# — the figures of Anthropic's pricing page.
EXPECTED = [
    ("claude-opus-4-5", "5", "25", "6.25", "10", "0.50"),
    ("claude-opus-4-5-20251101", "5", "25", "6.25", "10", "0.50"),
    ("claude-opus-4-1", "15", "75", "18.75", "30", "1.50"),
    ("claude-opus-4-1-20250805", "15", "75", "18.75", "30", "1.50"),
    ("claude-opus-4-20250514", "15", "75", "18.75", "30", "1.50"),
    ("claude-sonnet-4-5", "3", "15", "3.75", "6", "0.30"),
    ("claude-sonnet-4-5-20250929", "3", "15", "3.75", "6", "0.30"),
    ("claude-sonnet-4-20250514", "3", "15", "3.75", "6", "0.30"),
    ("claude-3-7-sonnet-latest", "3", "15", "3.75", "6", "0.30"),
    ("claude-haiku-4-5", "1", "5", "1.25", "2", "0.10"),
    ("claude-haiku-4-5-20251001", "1", "5", "1.25", "2", "0.10"),
    ("claude-3-5-haiku-20241022", "0.80", "4", "1", "1.6", "0.08"),
    ("claude-3-5-haiku-latest", "0.80", "4", "1", "1.6", "0.08"),
    ("claude-3-haiku-20240307", "0.25", "1.25", "0.30", "0.50", "0.03"),
]


@pytest.mark.parametrize(("model", "inp", "out", "w5", "w1h", "read"), EXPECTED)
def test_each_token_kind_is_priced_at_its_rate(
    model: str, inp: str, out: str, w5: str, w1h: str, read: str
) -> None:
    million = 1_000_000
    assert pricing.cost(model, DAY, million, 0) == Decimal(inp)
    assert pricing.cost(model, DAY, 0, million) == Decimal(out)
    assert pricing.cost(model, DAY, 0, 0, cache_write_5m_tokens=million) == Decimal(w5)
    assert pricing.cost(model, DAY, 0, 0, cache_write_1h_tokens=million) == Decimal(w1h)
    assert pricing.cost(model, DAY, 0, 0, cache_read_tokens=million) == Decimal(read)


def test_a_mixed_call_adds_up_exactly() -> None:
    # 1,200 in, 300 out on Haiku 4.5: the example TOKEN_USAGE event's $0.0027.
    assert pricing.cost("claude-haiku-4-5", DAY, 1200, 300) == Decimal("0.0027")
    # Sonnet 4.5 with every kind at once.
    assert pricing.cost("claude-sonnet-4-5", DAY, 10_000, 2_000, 50_000, 4_000, 1_000) == (
        Decimal("0.03") + Decimal("0.03") + Decimal("0.015") + Decimal("0.015") + Decimal("0.006")
    )


def test_aliases_and_spellings_map_to_one_model() -> None:
    table = Pricing.bundled()
    for name in ("claude-haiku-4-5-20251001", "Claude-Haiku-4-5", "claude-haiku-4-5@20251001 "):
        assert table.canonical(name) == "claude-haiku-4-5"
        assert table.price_for(name, DAY) == table.price_for("claude-haiku-4-5", DAY)


def test_an_unknown_model_has_no_price_not_zero() -> None:
    assert pricing.price_for("gpt-4o", DAY) is None
    assert pricing.cost("gpt-4o", DAY, 1000, 1000) is None
    assert pricing.cost("", DAY, 1000, 1000) is None


def test_usage_before_a_models_first_price_is_unknown() -> None:
    assert pricing.cost("claude-opus-4-5", date(2025, 11, 23), 1000, 0) is None
    assert pricing.cost("claude-opus-4-5", date(2025, 11, 24), 1_000_000, 0) == Decimal(5)


def test_the_price_in_force_on_the_day_applies() -> None:
    # claude-3-5-haiku: launch price until 2024-12-01, then the cut.
    assert pricing.cost("claude-3-5-haiku", date(2024, 11, 30), 1_000_000, 1_000_000) == 6
    assert pricing.cost("claude-3-5-haiku", date(2024, 12, 1), 1_000_000, 1_000_000) == Decimal(
        "4.80"
    )


def _table(prices: list[dict[str, str]], **extra: object) -> str:
    return json.dumps(
        {
            "currency": "USD",
            "unit": "per million tokens",
            "source": "test",
            "checked": "2026-01-01",
            "models": [{"model": "m", "aliases": ["m-2026"], "prices": prices}],
            **extra,
        }
    )


def _price(day: str, inp: str) -> dict[str, str]:
    return {
        "effective": day,
        "input": inp,
        "output": "1",
        "cache_write_5m": "1",
        "cache_write_1h": "1",
        "cache_read": "1",
    }


def test_a_price_change_reprices_only_the_days_after_it() -> None:
    table = Pricing.from_json(_table([_price("2026-02-01", "2"), _price("2026-01-01", "3")]))
    assert table.cost("m", date(2026, 1, 31), 1_000_000, 0) == 3
    assert table.cost("m-2026", date(2026, 2, 1), 1_000_000, 0) == 2
    assert table.cost("m", date(2027, 1, 1), 1_000_000, 0) == 2
    assert [(start, end) for start, end, _ in table.periods("m")] == [
        (date(2026, 1, 1), date(2026, 2, 1)),
        (date(2026, 2, 1), None),
    ]


def test_a_malformed_table_is_refused() -> None:
    with pytest.raises(ValidationError):
        Pricing.from_json(_table([_price("2026-01-01", "-1")]))
    with pytest.raises(ValidationError):
        Pricing.from_json(_table([_price("2026-01-01", "1"), _price("2026-01-01", "2")]))
    with pytest.raises(ValidationError, match="listed under both"):
        Pricing.from_json(
            json.dumps(
                {
                    "currency": "USD",
                    "unit": "per million tokens",
                    "source": "t",
                    "checked": "2026-01-01",
                    "models": [
                        {"model": "a", "prices": [_price("2026-01-01", "1")]},
                        {"model": "b", "aliases": ["A"], "prices": [_price("2026-01-01", "1")]},
                    ],
                }
            )
        )
