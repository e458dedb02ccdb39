"""The daily spend chart is a real PNG, with usage and without."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta

from PIL import Image

from bot.context import AppContext
from bot.services.costs.charts import HEIGHT_PX, WIDTH_PX, daily_spend_png
from bot.services.costs.ledger import CostService
from tests.costs.conftest import TODAY, UsageWriter


def _decode(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


async def test_stacked_bars_per_agent(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context()
    for i, agent in enumerate(("dev-e-1", "dev-e-2", "review-e-1")):
        await record_usage(
            TODAY - timedelta(days=i), agent, "claude-haiku-4-5", inputTokens=(i + 1) * 10**6
        )
    series = await CostService(ctx).daily(30)
    image = _decode(daily_spend_png(series))
    assert image.format == "PNG" and image.size == (WIDTH_PX, HEIGHT_PX)
    # Bars were drawn: the picture holds more than a handful of colours.
    assert len(image.convert("RGB").getcolors(maxcolors=100_000) or []) > 10


async def test_no_usage_draws_an_empty_chart(cost_context: Callable[..., AppContext]) -> None:
    series = await CostService(cost_context()).daily(7)
    assert series.empty
    empty = _decode(daily_spend_png(series))
    assert empty.size == (WIDTH_PX, HEIGHT_PX)
