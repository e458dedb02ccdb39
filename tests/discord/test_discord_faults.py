"""Discord failing under the bot: rate limits, 5xx, a dropped gateway — replies still arrive
once. (Alerts under the same faults: test_alerts.py.)"""

from __future__ import annotations

from tests.discord.conftest import Harness


def sent(harness: Harness, operation_id: str, since: int) -> int:
    return sum(1 for r in harness.fake.requests[since:] if r.operation_id == operation_id)


async def test_a_rate_limited_reply_is_sent_again_after_the_wait_and_arrives_once(
    harness: Harness,
) -> None:
    before = len(harness.fake.requests)
    harness.fake.fail("create_interaction_response", 429, retry_after=0.05)
    reply = await harness.reply("events recent")
    assert reply["embeds"]
    assert sent(harness, "create_interaction_response", before) == 2  # the 429, then the reply


async def test_a_deferred_reply_survives_a_5xx_and_arrives_once(harness: Harness) -> None:
    before = len(harness.fake.requests)
    harness.fake.fail("update_original_webhook_message", 502)
    interaction = await harness.invoke("health")
    reply = await interaction.reply(timeout=15)
    assert reply["embeds"]
    assert sent(harness, "create_interaction_response", before) == 1  # deferred once
    assert sent(harness, "update_original_webhook_message", before) == 2  # 502, then the reply


async def test_a_command_sent_while_the_gateway_is_down_is_answered_after_the_resume(
    harness: Harness,
) -> None:
    fake = harness.fake
    await fake.drop_connection(4000)
    # Dispatched while no socket is open: it waits in the session's buffer for the RESUME.
    interaction = await fake.invoke("events recent")
    await fake.wait_for(lambda: fake.resumes == 1 and fake.connected, timeout=10)
    reply = await interaction.reply(timeout=10)
    assert reply["embeds"]
    assert fake.identifies == 1  # resumed, not a new session
