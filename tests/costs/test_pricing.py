"""Prices: genai-prices for every model the agents run, each token kind, the day's price,
unknown models, and the local price file (CONDUCTOR_PRICES_FILE) on top."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest

from bot.services.costs import pricing
from bot.services.costs.pricing import (
    DATABASE_SOURCE,
    FILE_SOURCE,
    PriceFile,
    PriceFileError,
    Pricing,
    load_price_file,
)

DAY = date(2026, 3, 10)
MILLION = 1_000_000

# (model as an agent might send it, input, output, 5m write, 1h write, cache read) in USD/MTok
# — the figures of Anthropic's pricing page, which genai-prices carries.
EXPECTED = [
    ("claude-sonnet-4-6", "3", "15", "3.75", "6", "0.3"),
    ("claude-opus-4-6", "5", "25", "6.25", "10", "0.5"),
    ("claude-opus-4-7", "5", "25", "6.25", "10", "0.5"),
    ("claude-opus-4-5", "5", "25", "6.25", "10", "0.5"),
    ("claude-opus-4-5-20251101", "5", "25", "6.25", "10", "0.5"),
    ("claude-opus-4-1-20250805", "15", "75", "18.75", "30", "1.5"),
    ("claude-opus-4-20250514", "15", "75", "18.75", "30", "1.5"),
    ("claude-sonnet-4-5-20250929", "3", "15", "3.75", "6", "0.3"),
    ("claude-sonnet-4-20250514", "3", "15", "3.75", "6", "0.3"),
    ("claude-3-7-sonnet-latest", "3", "15", "3.75", "6", "0.3"),
    ("claude-haiku-4-5", "1", "5", "1.25", "2", "0.1"),
    ("claude-haiku-4-5-20251001", "1", "5", "1.25", "2", "0.1"),
    ("claude-3-5-haiku-latest", "0.8", "4", "1", "1.6", "0.08"),
    ("claude-3-haiku-20240307", "0.25", "1.25", "0.3", "0.5", "0.03"),
]


@pytest.mark.parametrize(("model", "inp", "out", "w5", "w1h", "read"), EXPECTED)
def test_each_token_kind_is_priced_at_its_rate(
    model: str, inp: str, out: str, w5: str, w1h: str, read: str
) -> None:
    table = Pricing()
    assert table.cost(model, DAY, MILLION, 0) == Decimal(inp)
    assert table.cost(model, DAY, 0, MILLION) == Decimal(out)
    assert table.cost(model, DAY, 0, 0, cache_write_5m_tokens=MILLION) == Decimal(w5)
    assert table.cost(model, DAY, 0, 0, cache_write_1h_tokens=MILLION) == Decimal(w1h)
    assert table.cost(model, DAY, 0, 0, cache_read_tokens=MILLION) == Decimal(read)
    assert table.price_for(model, DAY).source == f"genai-prices {genai_prices.__version__}"


def test_a_sonnet_4_6_turn_of_a_million_in_and_100k_out_costs_4_50() -> None:
    # The long-context tier (> 200k input in one request) is not applied: usage is summed per
    # day, so the base rate prices it, before and after genai-prices dropped the tier.
    for day in (DAY, date(2026, 12, 1)):
        assert Pricing().cost("claude-sonnet-4-6", day, MILLION, 100_000) == Decimal("4.5")


def test_a_mixed_call_adds_up_exactly() -> None:
    table = Pricing()
    # 1,200 in, 300 out on Haiku 4.5: the example TOKEN_USAGE event's $0.0027.
    assert table.cost("claude-haiku-4-5", DAY, 1200, 300) == Decimal("0.0027")
    # Sonnet 4.6 with every kind at once.
    assert table.cost("claude-sonnet-4-6", DAY, 10_000, 2_000, 50_000, 4_000, 1_000) == (
        Decimal("0.03") + Decimal("0.03") + Decimal("0.015") + Decimal("0.015") + Decimal("0.006")
    )


def test_spellings_of_a_model_share_its_price() -> None:
    table = Pricing()
    haiku = table.price_for("claude-haiku-4-5", DAY)
    for name in ("claude-haiku-4-5-20251001", "Claude-Haiku-4-5", "claude-haiku-4-5@20251001 "):
        assert table.price_for(name, DAY) == haiku


def test_an_unknown_or_empty_model_has_no_price_not_zero() -> None:
    table = Pricing()
    assert table.price_for("claude-mystery-9", DAY) is None
    assert table.cost("claude-mystery-9", DAY, 1000, 1000) is None
    assert table.cost("", DAY, 1000, 1000) is None
    assert table.cost("  ", DAY, 1000, 1000) is None


def test_other_providers_models_are_priced_too() -> None:
    # An agent on OpenAI: no separate cache-write rate, so writes cost input, as genai-prices
    # prices them.
    gpt = Pricing().price_for("gpt-4o", DAY)
    assert gpt is not None
    assert (gpt.input, gpt.output, gpt.cache_read, gpt.cache_write_5m) == (
        Decimal("2.5"),
        Decimal("10"),
        Decimal("1.25"),
        Decimal("2.5"),
    )


def test_the_price_in_force_on_the_day_applies() -> None:
    # genai-prices records OpenAI's o3 price cut of 2025-06-10.
    table = Pricing()
    assert table.cost("o3", date(2025, 6, 9), MILLION, 0) == 10
    assert table.cost("o3", date(2025, 6, 10), MILLION, 0) == 2
    assert [
        (start, end, p.input)
        for start, end, p in table.periods("o3", date(2025, 6, 8), date(2025, 6, 11))
    ] == [
        (date(2025, 6, 8), date(2025, 6, 10), Decimal(10)),
        (date(2025, 6, 10), date(2025, 6, 12), Decimal(2)),
    ]


def test_prices_are_resolved_once_per_model_and_day(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, date]] = []
    real = pricing.database_price

    def counted(model: str, day: date) -> tuple[str | None, pricing.Price | None]:
        calls.append((model, day))
        return real(model, day)

    monkeypatch.setattr(pricing, "database_price", counted)
    table = Pricing()
    for _ in range(1000):
        table.cost("claude-sonnet-4-6", DAY, 10, 10)
        table.cost("claude-mystery-9", DAY, 10, 10)
    assert calls == [("claude-sonnet-4-6", DAY), ("claude-mystery-9", DAY)]


# --- the local price file ---------------------------------------------------------------------


def _rates(day: str, inp: str) -> dict[str, str]:
    return {
        "effective": day,
        "input": inp,
        "output": "1",
        "cache_write_5m": "1",
        "cache_write_1h": "1",
        "cache_read": "1",
    }


def _file(*models: dict[str, object]) -> PriceFile:
    return PriceFile.model_validate({"models": list(models)})


def test_the_file_adds_a_model_the_database_does_not_know() -> None:
    table = Pricing(
        _file(
            {
                "model": "claude-mystery-9",
                "aliases": ["mystery"],
                "prices": [_rates("2026-03-01", "7")],
            }
        )
    )
    assert table.cost("claude-mystery-9", DAY, MILLION, 0) == 7
    assert table.cost("Mystery", DAY, MILLION, 0) == 7
    assert table.price_for("claude-mystery-9", DAY).source == FILE_SOURCE
    # Before its first price, a model only the file knows has none.
    assert table.cost("claude-mystery-9", date(2026, 2, 28), MILLION, 0) is None
    assert table.sources == [DATABASE_SOURCE, FILE_SOURCE]


def test_the_file_overrides_the_database_from_its_date_on() -> None:
    # A negotiated Sonnet 4.6 rate from 2026-03-10: the database's price before, the file's after.
    table = Pricing(
        _file(
            {
                "model": "claude-sonnet-4-6",
                "prices": [_rates("2026-03-10", "2"), _rates("2026-04-01", "1.5")],
            }
        )
    )
    assert table.cost("claude-sonnet-4-6", date(2026, 3, 9), MILLION, 0) == 3
    assert table.price_for("claude-sonnet-4-6", date(2026, 3, 9)).source == DATABASE_SOURCE
    assert table.cost("claude-sonnet-4-6", DAY, MILLION, 0) == 2
    assert table.cost("claude-sonnet-4-6-20260301", DAY, MILLION, 0) == 2  # a dated snapshot id
    assert table.cost("claude-sonnet-4-6", date(2026, 4, 1), MILLION, 0) == Decimal("1.5")
    assert [
        (s, e) for s, e, _ in table.periods("claude-sonnet-4-6", date(2026, 3, 9), date(2026, 4, 2))
    ] == [
        (date(2026, 3, 9), date(2026, 3, 10)),
        (date(2026, 3, 10), date(2026, 4, 1)),
        (date(2026, 4, 1), date(2026, 4, 3)),
    ]


def test_a_price_file_is_read_as_yaml_or_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text(
        "models:\n"
        "  - model: claude-mystery-9\n"
        "    prices:\n"
        "      - {effective: 2026-03-01, input: 2, output: 8, cache_write_5m: 2.5,\n"
        "         cache_write_1h: 4, cache_read: 0.2}\n"
    )
    json_file = tmp_path / "prices.json"
    json_file.write_text(
        json.dumps({"models": [{"model": "m", "prices": [_rates("2026-03-01", "3")]}]})
    )
    assert Pricing.from_file(yaml_file).cost("claude-mystery-9", DAY, 0, MILLION) == 8
    assert Pricing.from_file(json_file).cost("m", DAY, MILLION, 0) == 3
    assert load_price_file(yaml_file).models[0].prices[0].cache_read == Decimal("0.2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [", "is not valid YAML/JSON"),
        ("[]", "Input should be a valid dictionary"),
        ("models: []", "models: List should have at least 1 item"),
        (
            json.dumps({"models": [{"model": "m", "prices": [_rates("2026-01-01", "-1")]}]}),
            "greater than or equal to 0",
        ),
        (
            json.dumps(
                {
                    "models": [
                        {
                            "model": "m",
                            "prices": [_rates("2026-01-01", "1"), _rates("2026-01-01", "2")],
                        }
                    ]
                }
            ),
            "two prices share an effective date",
        ),
        (
            json.dumps(
                {
                    "models": [
                        {"model": "a", "prices": [_rates("2026-01-01", "1")]},
                        {"model": "b", "aliases": ["A"], "prices": [_rates("2026-01-01", "1")]},
                    ]
                }
            ),
            "listed under both",
        ),
        (
            json.dumps(
                {"models": [{"model": "m", "prices": [{"effective": "2026-01-01", "input": "1"}]}]}
            ),
            "output: Field required",
        ),
        (
            json.dumps({"models": [{"model": "m", "prices": [_rates("2026-01-01", "1")], "x": 1}]}),
            "models.0.x: Extra inputs are not permitted",
        ),
    ],
)
def test_a_malformed_price_file_is_refused_in_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    with pytest.raises(PriceFileError, match=message) as caught:
        load_price_file(path)
    assert "\n" not in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_price_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match=r"cannot read .*nowhere\.yaml"):
        load_price_file(tmp_path / "nowhere.yaml")
