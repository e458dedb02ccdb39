"""Wire benchmark: `/cost summary 30` through the real bot, with a sizeable ledger.

Run by hand (`python bench/cost_command.py`), not as a test. It loads TOKEN_USAGE events into an
embedded PostgreSQL exactly as bench/cost_summary.py does (same shapes, projected by the store's
own function), starts the fake Discord in this process and the real `conductor-e bot` as a
separate process, then times `/cost summary` (30 days) over --runs invocations:

  ack:    INTERACTION_CREATE sent → the bot's deferral arrives (Discord's 3-second deadline)
  answer: INTERACTION_CREATE sent → the edited reply with its embed and chart has arrived
          (two projection queries, the top issues, and the PNG drawn in a worker thread)

The service-level figures (without Discord or the chart) are in bench/cost_summary.py.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import bot_process, fresh_database, percentile  # noqa: E402
from bench.cost_summary import load  # noqa: E402
from tests.fakes.discord import FakeDiscord  # noqa: E402


def summary_row(name: str, samples: list[float]) -> str:
    return (
        f"  {name:<8} p50 {statistics.median(samples):7.1f} ms   p99 "
        f"{percentile(samples, 0.99):7.1f} ms   min {min(samples):7.1f}   max {max(samples):7.1f}"
    )


async def main(args: argparse.Namespace) -> None:
    async with fresh_database("cost_command") as dsn:
        await run(args, dsn)


async def run(args: argparse.Namespace, dsn: str) -> None:
    fake = FakeDiscord()
    await fake.start()
    try:
        print(f"loading {args.events:,} TOKEN_USAGE events ...")
        await load(dsn, args.events, args.sample)
        async with bot_process(dsn, fake, "cost"):
            # Warm-up: imports, the first matplotlib figure, pool connections and plan caches.
            for _ in range(3):
                await (await fake.invoke("cost summary", {"days": 30})).reply(timeout=60)

            acks, answers, sizes = [], [], []
            for _ in range(args.runs):
                interaction = await fake.invoke("cost summary", {"days": 30})
                reply = await interaction.reply(timeout=60)
                done = time.perf_counter()
                assert interaction.callback_at is not None and interaction.dispatched_at is not None
                acks.append((interaction.callback_at - interaction.dispatched_at) * 1000)
                answers.append((done - interaction.dispatched_at) * 1000)
                [attachment] = reply["attachments"]
                sizes.append(attachment["size"])
            assert not fake.schema_errors, fake.schema_errors

            print(
                f"/cost summary 30 days, {args.runs} runs, chart {statistics.median(sizes):,.0f} B:"
            )
            print(summary_row("ack", acks))
            print(summary_row("answer", answers))
    finally:
        await fake.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--sample", type=int, default=500, help="events through append")
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args()))
