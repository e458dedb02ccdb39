"""Coordination loop benchmark: model calls and cost over a simulated day of 288 runs.

Run by hand (`python bench/coordination_day.py`), not as a test. One embedded PostgreSQL in a
temporary directory (or a fresh database on the server in DATABASE_URL), the real
CoordinationService with the real anthropic SDK talking to the local fake Messages API
(tests/fakes/anthropic/) and the real webhook client posting to the local fake Discord
webhook. No GitHub: the GitHub side has its own benchmark.

The day: a run every 5 simulated minutes (288 runs). Before 20 of them, spread over the day,
the queue changes (an issue is approved, or the oldest queued issue is done); the other 268
runs find the same facts as the run before. The fake answers every model call with realistic
usage (about 600 input and 150 output tokens, with a little spread). Cost is what the loop
recorded as TOKEN_USAGE for `conductor-e`, priced by bot/services/costs/pricing.py
(genai-prices: Haiku 4.5 at $1/MTok in, $5/MTok out).

The comparison is the original design: a Haiku call on every run, about $0.005 a run, $1.44 a
day; and that same every-run design at this benchmark's own token figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import fresh_database  # noqa: E402
from bot.context import AppContext  # noqa: E402
from bot.integrations.anthropic_messages import MessagesClient  # noqa: E402
from bot.integrations.discord_webhook import DiscordWebhook  # noqa: E402
from bot.services.coordination.summary import Summariser  # noqa: E402
from bot.services.costs.pricing import Pricing  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from store import catalogue  # noqa: E402
from store.database import create_pool  # noqa: E402
from store.events import NewEvent  # noqa: E402
from tests.coordination.fake_webhook import FakeWebhook  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.services import coordination  # noqa: E402

ORIGINAL_PER_RUN = Decimal("0.005")
RUNS_PER_DAY = 288
TARGET = Decimal("0.05")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def append(context: AppContext, event_type: str, **payload: object) -> None:
    data = catalogue.validate(event_type, dict(payload), internal=True)
    stream = catalogue.stream_for(event_type, data)
    await context.store.append(stream, [NewEvent(event_type, data, {"actor": "bench"})])


async def change_queue(context: AppContext, step: int, rng: random.Random) -> str:
    """One change to the queue: mostly a new approval, sometimes the oldest issue done."""
    queued = await context.projections.queue(limit=1)
    if queued and rng.random() < 0.35:
        issue = queued[0]
        await append(context, "ISSUE_DONE", repo=issue.repo, issueNumber=issue.number)
        return f"done {issue.stream_id}"
    number = 100 + step
    priority = rng.choice(["normal", "normal", "normal", "high", "critical"])
    await append(
        context,
        "ISSUE_APPROVED",
        repo="acme/app",
        issueNumber=number,
        title=f"Fix flaky thing number {number}",
        priority=priority,
    )
    return f"approved acme/app#{number} ({priority})"


async def simulate(dsn: str, runs: int, changes: int, seed: int) -> None:
    rng = random.Random(seed)
    change_at = set(rng.sample(range(runs), changes))
    clock = Clock()
    pool = await create_pool(dsn, max_size=5)
    async with (
        FakeAnthropic() as anthropic,
        FakeWebhook() as webhook,
        aiohttp.ClientSession() as http,
    ):
        settings = load_settings(
            {
                "CONDUCTOR_DATA_DIR": "/nonexistent",
                "ANTHROPIC_API_KEY": "sk-ant-api03-bench-key-for-the-fake",
                "ANTHROPIC_BASE_URL": anthropic.url,
                "DISCORD_WEBHOOK_URL": webhook.url,
            }
        )
        context = AppContext.build(settings, dsn, pool, http, clock=clock)
        messages = MessagesClient.from_settings(settings, timeout=10.0, max_retries=0)
        anthropic.reply = lambda body: (
            "**Queue** 4 waiting (1 critical). Nothing stuck, nothing escalated. "
            "New since last update: acme/app#107."
        )
        for _ in range(runs):
            anthropic.next_usage(
                input_tokens=600 + rng.randint(-60, 60), output_tokens=150 + rng.randint(-30, 30)
            )
        # Seed a small queue so the first summary has something to say.
        for n in range(1, 4):
            await append(
                context,
                "ISSUE_APPROVED",
                repo="acme/app",
                issueNumber=n,
                title=f"Seed issue {n}",
                priority="normal",
            )
        service = coordination(
            context, None, Summariser(context, messages), DiscordWebhook(http, webhook.url)
        )
        durations: list[float] = []
        failures = 0
        log: list[str] = []
        started = time.perf_counter()
        for i in range(runs):
            if i in change_at:
                log.append(f"run {i + 1:3d}: {await change_queue(context, i, rng)}")
            t0 = time.perf_counter()
            result = await service.run()
            durations.append((time.perf_counter() - t0) * 1000)
            failures += not result.ok
            clock.now += timedelta(minutes=5)
        elapsed = time.perf_counter() - started
        await messages.close()

        usage = await context.store.read_all(0, 100_000, types=["TOKEN_USAGE"])
        posted = await context.store.read_all(0, 100_000, types=["SUMMARY_POSTED"])
        run_events = await context.store.read_all(
            0, 100_000, types=["COORDINATION_RUN_COMPLETED", "COORDINATION_RUN_FAILED"]
        )
    await pool.close()

    calls = anthropic.calls
    prompts = [
        len(str(r.body.get("system", ""))) + len(str(r.body["messages"][0]["content"]))
        for r in anthropic.messages_requests()
    ]
    prompt_chars = statistics.mean(prompts) if prompts else 0.0
    tokens_in = sum(e.data["inputTokens"] for e in usage)
    tokens_out = sum(e.data["outputTokens"] for e in usage)
    day_cost = sum((Decimal(str(e.data["costUsd"])) for e in usage), Decimal(0))
    per_call = day_cost / calls if calls else Decimal(0)
    today = date.today()
    every_run_same_tokens = Decimal(RUNS_PER_DAY) * (
        Pricing().cost(
            "claude-haiku-4-5",
            today,
            round(tokens_in / max(calls, 1)),
            round(tokens_out / max(calls, 1)),
        )
        or Decimal(0)
    )
    original = ORIGINAL_PER_RUN * RUNS_PER_DAY
    print("\n".join(log))
    print()
    print(f"runs                        {runs} (queue changed before {changes} of them)")
    print(f"failed runs                 {failures}")
    print(f"run records                 {len(run_events)}")
    print(f"model calls                 {calls}")
    print(f"summaries posted            {len(posted)} (webhook messages: {len(webhook.messages)})")
    print(
        f"tokens                      {tokens_in:,} in, {tokens_out:,} out "
        f"(per call {tokens_in / max(calls, 1):.0f} / {tokens_out / max(calls, 1):.0f})"
    )
    print(
        f"prompt size                 {prompt_chars:.0f} characters on average "
        f"(about {prompt_chars / 4:.0f} tokens at 4 characters a token)"
    )
    print(f"cost per model call         ${per_call:.5f}")
    print(f"cost for the day            ${day_cost:.4f}   (target: under ${TARGET})")
    print(
        f"original design            ${original:.2f}    "
        f"({RUNS_PER_DAY} calls at ${ORIGINAL_PER_RUN})"
    )
    print(f"every-run, same tokens      ${every_run_same_tokens:.4f}")
    print(f"saving against the original {100 * (1 - day_cost / original):.1f}%")
    print(
        f"run time                    p50 {statistics.median(durations):.1f} ms, "
        f"p95 {statistics.quantiles(durations, n=20)[18]:.1f} ms, "
        f"max {max(durations):.1f} ms; whole day {elapsed:.1f} s"
    )
    verdict = "MET" if day_cost < TARGET else "MISSED"
    print(f"target                      {verdict}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS_PER_DAY)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()

    async with fresh_database("coordination") as dsn:
        await simulate(dsn, args.runs, args.changes, args.seed)


if __name__ == "__main__":
    asyncio.run(main())
