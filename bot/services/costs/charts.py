"""PNG charts for Discord: daily spend per agent as stacked bars.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, so no global figure state and
no GUI backend), safe to call from a worker thread: `await asyncio.to_thread(render, ...)`.
matplotlib (about 30 MB) is imported by the first chart, not when the bot starts.
"""

from __future__ import annotations

import io
from decimal import Decimal

from bot.services.costs.figures import DailySeries

WIDTH_PX = 1000
HEIGHT_PX = 500
DPI = 100


def daily_spend_png(series: DailySeries, title: str | None = None) -> bytes:
    """Stacked bars of USD per day, one colour per agent; an empty chart says so."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    days = len(series.days)
    heading = title or f"Daily spend per agent, last {days} day{'s' if days != 1 else ''}"
    axes.set_title(heading)
    positions = list(range(days))
    labels = [d.strftime("%m-%d") for d in series.days]
    if series.empty:
        axes.text(
            0.5,
            0.5,
            f"No usage in the last {days} day{'s' if days != 1 else ''}",
            ha="center",
            va="center",
            transform=axes.transAxes,
            fontsize=14,
            color="#666666",
        )
        axes.set_yticks([])
    else:
        bottom = [0.0] * days
        for agent in series.agents:
            heights = [float(v) for v in series.usd[agent]]
            axes.bar(positions, heights, bottom=bottom, label=agent, width=0.8)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        axes.set_ylabel("USD")
        axes.legend(loc="upper left", fontsize="small", ncols=min(4, len(series.agents)))
        axes.grid(axis="y", alpha=0.3)
        total = sum((sum(series.usd[a], Decimal(0)) for a in series.agents), Decimal(0))
        note = f"total ${total:,.2f}"
        if series.unpriced_events:
            n = series.unpriced_events
            note += f" · {n:,} event{'s' if n != 1 else ''} without a price (reported cost used)"
        axes.text(0.99, 0.98, note, ha="right", va="top", transform=axes.transAxes)
    step = max(1, days // 15)  # at most ~15 date labels
    axes.set_xticks(positions[::step], labels[::step], rotation=45, ha="right")
    axes.set_xlim(-0.6, days - 0.4)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
