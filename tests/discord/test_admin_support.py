"""Shared fixtures for the admin wire tests (test_admin_*.py), and the tests of the pieces they
rest on: the confirm view's owner rule and the rate limit of progress edits.

The bot is the real ConductorBot against the fake Discord; its AdminCog talks through the real
kubernetes-asyncio client to FakeKubernetes, configured by a kubeconfig the fake writes; the
store is the test's own PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from bot.services.cluster.polling import PollPolicy
from bot.ui.confirm import CANCEL_ID, CONFIRM_ID
from cogs.admin import AdminCog
from store.catalogue import ADMIN_STREAM
from store.events import RecordedEvent
from tests.discord.conftest import ADMIN_CHANNEL, ADMIN_USER, OTHER_USER, Harness, StartBot
from tests.fakes.discord import FakeDiscord, FakeInteraction, buttons, ephemeral
from tests.fakes.kubernetes import FakeKubernetes
from tests.waiting import wait_until

NAMESPACE = "conductor-e"
# The fake's rollouts move one step per GET: poll fast, so only deliberate timeouts wait.
FAST = PollPolicy(initial=0.001, factor=2.0, maximum=0.01)
TARGETS = ("conductor-e-bot", "conductor-e-api", "stuck", "absent")
FLUX_OBJECTS = (
    "kustomization/conductor-e",
    "helmrelease/conductor-e",
    "gitrepository/conductor-e",
)
GITHUB_SECRET = "ghs_notAShapeButKnownValue0000"  # known to the process: GITHUB_TOKEN
WAIT = 10.0


def admin_env(kube: FakeKubernetes, kubeconfig: Path) -> dict[str, str]:
    return {
        "CONDUCTOR_KUBECONFIG": str(kubeconfig),
        "CONDUCTOR_KUBE_CONTEXT": "fake",
        "CONDUCTOR_NAMESPACE": kube.namespace,
        "CONDUCTOR_ROLLOUT_TARGETS": ",".join(TARGETS),
        "CONDUCTOR_FLUX_OBJECTS": ",".join(FLUX_OBJECTS),
        "CONDUCTOR_AUDIT_CHANNEL_ID": str(ADMIN_CHANNEL),
        "CONDUCTOR_LOOP_ENABLED": "false",
        "GITHUB_TOKEN": GITHUB_SECRET,
    }


@dataclass
class Admin:
    """The harness, the loaded AdminCog and the fake cluster, with the admin test's steps."""

    harness: Harness
    cog: AdminCog
    kube: FakeKubernetes

    @property
    def fake(self) -> FakeDiscord:
        return self.harness.fake

    async def ask(
        self, name: str, options: dict[str, Any], user_id: int = ADMIN_USER
    ) -> tuple[FakeInteraction, dict[str, Any]]:
        """Run a confirmed command; returns the interaction and the question it posted."""
        interaction = await self.harness.invoke(name, options, user_id=user_id)
        question = await interaction.reply(WAIT)
        assert set(buttons(question)) == {CONFIRM_ID, CANCEL_ID}, question
        return interaction, question

    async def press(
        self, message: dict[str, Any], custom_id: str, user_id: int = ADMIN_USER
    ) -> Any:
        press = await self.harness.press(message, custom_id, user_id=user_id, timeout=WAIT)
        return await press.callback(WAIT)

    async def outcome(self, interaction: FakeInteraction) -> dict[str, Any]:
        """The command's message once it shows the outcome (✅ or ❌ in its title)."""

        def done() -> bool:
            return title(interaction.original).startswith(("✅", "❌"))

        await self.fake.wait_for(done, WAIT)
        assert interaction.original is not None
        return interaction.original

    async def records(self) -> list[RecordedEvent]:
        return await self.harness.context.store.read_stream(ADMIN_STREAM)

    async def trail(self, count: int) -> list[RecordedEvent]:
        """The admin records once there are `count` of them (one action's, in a fresh store)."""
        events = await wait_until(
            self.records,
            ok=lambda e: len(e) >= count,
            timeout=WAIT,
            what=f"{count} admin records",
        )
        assert len(events) == count, [(e.type, e.data) for e in events]
        return events

    def audit_posts(self) -> list[str]:
        return [m["content"] for m in self.fake.channel_messages(ADMIN_CHANNEL)]

    async def audit_post(self, fragment: str) -> str:
        await self.fake.wait_for(lambda: any(fragment in p for p in self.audit_posts()), WAIT)
        return next(p for p in self.audit_posts() if fragment in p)


def title(message: dict[str, Any] | None) -> str:
    embeds = (message or {}).get("embeds") or []
    return str(embeds[0].get("title") or "") if embeds else ""


def description(message: dict[str, Any]) -> str:
    return str((message.get("embeds") or [{}])[0].get("description") or "")


def assert_trail(
    events: list[RecordedEvent], types: list[str], *, action: str, target: str | None
) -> None:
    """One action's complete trail: these types, in order, one actor and correlation id."""
    assert [e.type for e in events] == types, [(e.type, e.data) for e in events]
    assert {e.data["actor"] for e in events} == {f"discord:{ADMIN_USER}"}
    assert {e.data["action"] for e in events} == {action}
    assert {e.data.get("target") for e in events} == {target}
    ids = {e.data["correlationId"] for e in events}
    assert len(ids) == 1 and None not in ids
    assert {e.metadata.get("correlationId") for e in events} == ids


@pytest.fixture
async def kube() -> AsyncIterator[FakeKubernetes]:
    async with FakeKubernetes(namespace=NAMESPACE) as server:
        yield server


@pytest.fixture
async def admin(start_bot: StartBot, kube: FakeKubernetes, tmp_path: Path) -> Admin:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    harness = await start_bot(admin_env(kube, kubeconfig))
    # discord.py loads the extension as its own module object: compare by name, not class.
    cog = harness.bot.get_cog("AdminCog")
    assert type(cog).__name__ == "AdminCog"
    cog = cast(AdminCog, cog)
    cog.poll = FAST
    return Admin(harness, cog, kube)


# --- the confirm view and the progress message, on the wire -------------------------------------


async def test_only_the_invoker_may_press_and_buttons_are_disabled_after_use(
    admin: Admin,
) -> None:
    admin.kube.add_deployment("conductor-e-bot")
    _, question = await admin.ask("rollout restart", {"target": "conductor-e-bot"})
    assert not ephemeral(question)  # the team sees what is about to happen
    assert not any(b["disabled"] for b in buttons(question).values())

    press = await admin.harness.press(question, CONFIRM_ID, user_id=OTHER_USER, timeout=WAIT)
    refusal = await press.reply(WAIT)
    assert ephemeral(refusal)
    assert f"Only <@{ADMIN_USER}>" in refusal["content"]
    assert admin.kube.requests == []  # someone else's press did nothing

    await admin.press(question, CANCEL_ID)
    message = admin.fake.messages[question["id"]]
    assert all(b["disabled"] for b in buttons(message).values())
    assert "Cancelled" in description(message)
    assert admin.kube.requests == []


async def test_progress_edits_are_rate_limited_to_one_a_second(admin: Admin) -> None:
    # Five status steps, 0.05 s apart, polled every few ms: many progress callbacks, but the
    # message is edited at the first one and at the outcome only (they are < 1 s apart).
    admin.kube.add_deployment("conductor-e-bot", step_seconds=0.05)
    assert admin.cog.edit_interval == 1.0
    interaction, question = await admin.ask("rollout restart", {"target": "conductor-e-bot"})
    await admin.press(question, CONFIRM_ID)
    final = await admin.outcome(interaction)
    assert title(final) == "✅ Restarted deployment conductor-e-bot"
    edits = [
        r
        for r in admin.fake.requests
        if r.operation_id == "update_original_webhook_message" and interaction.token in r.path
    ]
    assert len(edits) == 2, [r.body for r in edits]
    first = edits[0].body["embeds"][0]
    assert first["title"] == "Restarting deployment conductor-e-bot"
    assert "restart requested" in first["description"]
    # The service reported every step; the final message lists them all.
    assert "successfully rolled out" in description(final)
    assert "1 out of 2 new replicas have been updated" in description(final)
