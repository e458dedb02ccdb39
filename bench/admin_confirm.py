"""/rollout restart benchmark: from the Confirm press to the first progress edit, and what one
followed rollout costs in Kubernetes requests and Discord edits.

Run by hand (`python bench/admin_confirm.py`), not as a test. Everything is real except the
far ends: an embedded PostgreSQL, the real ConductorBot (discord.py) against the fake Discord
in this process, and the real kubernetes-asyncio client against the fake API server of
tests/fakes/kubernetes/ through a kubeconfig file. The cog runs with its production settings:
the service's poll policy (0.25 s, x1.5, at most 2 s) and at most one progress edit a second.

  confirm → first edit: from the fake sending the button press (INTERACTION_CREATE) to the
                         bot's first edit of the message that shows the restart under way
                         (the service's GET and PATCH, then the progress callback's edit);
                         target under 1 s.
  requests per rollout:  Kubernetes requests the fake saw between the press and the outcome,
                         for a rollout of five status steps `--step` seconds apart; and the
                         Discord message edits it took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench._common import fresh_database  # noqa: E402
from bot.client import ConductorBot  # noqa: E402
from bot.context import AppContext  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.ui.confirm import CONFIRM_ID  # noqa: E402
from bot.wiring import Services  # noqa: E402
from store.database import create_pool  # noqa: E402
from tests.fakes.discord import FakeDiscord  # noqa: E402
from tests.fakes.kubernetes import FakeKubernetes  # noqa: E402

NAMESPACE = "conductor-e"
ADMIN = 600_000_000_000_000_009


def title(message: dict[str, Any] | None) -> str:
    embeds = (message or {}).get("embeds") or []
    return str(embeds[0].get("title") or "") if embeds else ""


class EditClock:
    """When the fake received each edit of an interaction's original message."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.times: dict[str, list[float]] = {}
        original = fake._op_update_original_webhook_message

        async def timed(request: Any, params: dict[str, str], *rest: Any) -> Any:
            self.times.setdefault(params["webhook_token"], []).append(time.perf_counter())
            return await original(request, params, *rest)

        # The fake looks its handlers up by name on the instance.
        fake._op_update_original_webhook_message = timed  # type: ignore[method-assign]


async def one_rollout(
    fake: FakeDiscord,
    kube: FakeKubernetes,
    bot: ConductorBot,
    clock: EditClock,
    name: str,
    step: float,
) -> tuple[float, int, list[float], float]:
    """(press → first progress edit in s, Kubernetes requests, edit times, rollout s)."""
    kube.add_deployment(name, replicas=2, step_seconds=step)
    interaction = await fake.invoke("rollout restart", {"target": name}, user_id=ADMIN)
    question = await interaction.reply(30)
    # discord.py tracks the view once the callback request has returned (see the tests).
    store = bot._connection._view_store
    await fake.wait_for(lambda: store.is_message_tracked(int(question["id"])), 30)
    message = fake.messages[question["id"]]
    seen_before = len(kube.requests)

    pressed = time.perf_counter()
    await fake.press(question, CONFIRM_ID, user_id=ADMIN)
    await fake.wait_for(lambda: title(message).startswith("Restarting deployment"), 30)
    first_edit = time.perf_counter() - pressed
    await fake.wait_for(lambda: title(message).startswith(("✅", "❌")), 120)
    took = time.perf_counter() - pressed
    if not title(message).startswith("✅"):
        raise RuntimeError(f"rollout of {name} did not succeed: {message['embeds'][0]}")
    return first_edit, len(kube.requests) - seen_before, clock.times[interaction.token], took


async def main(args: argparse.Namespace) -> None:
    async with fresh_database("admin") as dsn:
        with tempfile.TemporaryDirectory(prefix="conductor-e-bench-admin-") as root:
            await run(args, dsn, Path(root))


async def run(args: argparse.Namespace, dsn: str, root: Path) -> None:
    fake = FakeDiscord()
    await fake.start()
    kube = FakeKubernetes(namespace=NAMESPACE)
    await kube.start()
    bot: ConductorBot | None = None
    connection: asyncio.Task[None] | None = None
    try:
        names = [f"bench-{i}" for i in range(args.runs)]
        settings = load_settings(
            {
                "DATABASE_URL": dsn,
                "DISCORD_BOT_TOKEN": fake.token,
                "CONDUCTOR_DISCORD_API_URL": fake.api_url,
                "CONDUCTOR_GUILD_ID": str(fake.guild_id),
                "CONDUCTOR_ADMIN_USER_IDS": str(ADMIN),
                "CONDUCTOR_DATA_DIR": str(root / "data"),
                "CONDUCTOR_LOOP_ENABLED": "false",
                "CONDUCTOR_KUBECONFIG": str(kube.write_kubeconfig(root / "kubeconfig")),
                "CONDUCTOR_NAMESPACE": NAMESPACE,
                "CONDUCTOR_ROLLOUT_TARGETS": ",".join(names),
            }
        )
        pool = await create_pool(dsn)
        async with aiohttp.ClientSession() as http:
            context = AppContext.build(settings, dsn, pool, http)
            bot = ConductorBot(Services.build(context), extensions=["cogs.admin"])
            await bot.login(fake.token)
            connection = asyncio.create_task(bot.connect(reconnect=True))
            await asyncio.wait_for(bot.wait_until_ready(), 30)

            clock = EditClock(fake)
            results = []
            for name in names:
                results.append(await one_rollout(fake, kube, bot, clock, name, args.step))
            assert not fake.schema_errors, fake.schema_errors

            firsts = [r[0] * 1000 for r in results]
            requests = [r[1] for r in results]
            edits = [len(r[2]) for r in results]
            took = [r[3] for r in results]
            # Progress edits are spaced by the rate limit; the outcome is shown at once.
            gaps = [b - a for r in results for a, b in zip(r[2][:-2], r[2][1:-1], strict=True)]
            print(
                f"/rollout restart, {args.runs} confirmed rollouts, 5 status steps "
                f"{args.step:g}s apart, production poll policy and edit rate:"
            )
            print(
                f"  confirm press → first progress edit: median {statistics.median(firsts):.1f} ms,"
                f" max {max(firsts):.1f} ms (min {min(firsts):.1f}); target < 1000 ms: "
                f"{'met' if max(firsts) < 1000 else 'NOT met'}"
            )
            print(
                f"  Kubernetes requests per followed rollout: median "
                f"{statistics.median(requests):g} (min {min(requests)}, max {max(requests)})"
            )
            print(
                f"  Discord edits per rollout: median {statistics.median(edits):g} "
                f"(max {max(edits)}) over a median {statistics.median(took):.2f}s; "
                "closest progress edits "
                + (f"{min(gaps) * 1000:.0f} ms apart" if gaps else "— (only one)")
                + " (limit: one a second; the outcome itself is not held back)"
            )
            await bot.close()
            with contextlib.suppress(asyncio.CancelledError):
                await connection
            bot = None
        await pool.close()
    finally:
        if bot is not None:
            await bot.close()
        await kube.stop()
        await fake.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="confirmed rollouts")
    parser.add_argument("--step", type=float, default=0.5, help="seconds between status steps")
    asyncio.run(main(parser.parse_args()))
