"""DiscordWebhook against the fake execute-webhook endpoint: shapes, splitting, 429 and 5xx."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from pydantic import SecretStr

from bot.integrations.discord_webhook import (
    CONTENT_LIMIT,
    DiscordWebhook,
    WebhookError,
    split_content,
)
from tests.coordination.conftest import RecordingSleep
from tests.coordination.fake_webhook import CHANNEL_ID, WEBHOOK_TOKEN, FakeWebhook


def hook(
    http: aiohttp.ClientSession, webhook: FakeWebhook, sleeper: RecordingSleep, **kw: object
) -> DiscordWebhook:
    return DiscordWebhook(http, SecretStr(webhook.url), sleep=sleeper, **kw)  # type: ignore[arg-type]


async def test_posts_with_wait_true_as_conductor_e_and_returns_the_message(
    http_session: aiohttp.ClientSession, webhook: FakeWebhook, sleeper: RecordingSleep
) -> None:
    result = await hook(http_session, webhook, sleeper).post("Queue: 3 (1 critical)")

    assert [m.channel_id for m in result.messages] == [CHANNEL_ID]
    assert result.messages[0].id == webhook.messages[0]["id"]
    (request,) = webhook.requests
    assert request.query == {"wait": "true"}
    assert request.body == {
        "content": "Queue: 3 (1 critical)",
        "username": "Conductor-E",
        "allowed_mentions": {"parse": []},
    }
    assert sleeper.waits == []


async def test_a_429_is_retried_after_retry_after_and_the_message_is_posted_once(
    http_session: aiohttp.ClientSession, webhook: FakeWebhook, sleeper: RecordingSleep
) -> None:
    webhook.rate_limit(retry_after=0.75)

    result = await hook(http_session, webhook, sleeper).post("hello")

    assert webhook.contents() == ["hello"]
    assert [r.status for r in webhook.requests] == [429, 200]
    assert sleeper.waits == [0.75]  # the body's fractional retry_after, not the header's 1
    assert result.attempts == 2 and result.waited_seconds == 0.75


async def test_a_429_without_a_body_waits_for_the_retry_after_header(
    http_session: aiohttp.ClientSession, webhook: FakeWebhook, sleeper: RecordingSleep
) -> None:
    webhook.rate_limit(retry_after=3, header_only=True)

    await hook(http_session, webhook, sleeper).post("hello")

    assert webhook.contents() == ["hello"]
    assert sleeper.waits == [3.0]


async def test_a_429_longer_than_the_bound_is_not_waited_for(
    http_session: aiohttp.ClientSession, webhook: FakeWebhook, sleeper: RecordingSleep
) -> None:
    webhook.rate_limit(retry_after=600)

    with pytest.raises(WebhookError, match="rate-limited the webhook for 600s") as caught:
        await hook(http_session, webhook, sleeper, max_wait=60).post("hello")

    assert caught.value.retryable and caught.value.posted == 0
    assert sleeper.waits == [] and webhook.contents() == []


async def test_5xx_is_retried_with_bounded_exponential_backoff(
    http_session: aiohttp.ClientSession, webhook: FakeWebhook, sleeper: RecordingSleep
) -> None:
    webhook.fail(500)
    webhook.fail(502)

    await hook(http_session, webhook, sleeper).post("hello")

    assert webhook.contents() == ["hello"]
    assert sleeper.waits == [1.0, 2.0]


async def test_persistent_5xx_gives_up_after_max_attempts_without_leaking_the_url(
    http_session: aiohttp.ClientSession,
    webhook: FakeWebhook,
    sleeper: RecordingSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    webhook.fail(503, times=10)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(WebhookError) as caught:
        await hook(http_session, webhook, sleeper, max_attempts=3).post("hello")

    assert caught.value.message == "Discord answered HTTP 503 to the webhook post"
    assert len(webhook.requests) == 3 and sleeper.waits == [1.0, 2.0]
    assert WEBHOOK_TOKEN not in caplog.text and WEBHOOK_TOKEN not in str(caught.value)
    assert WEBHOOK_TOKEN not in repr(hook(http_session, webhook, sleeper))


async def test_an_unknown_webhook_is_refused_at_once(
    http_session: aiohttp.ClientSession, webhook: FakeWebhook, sleeper: RecordingSleep
) -> None:
    wrong = DiscordWebhook(
        http_session, webhook.url.replace(WEBHOOK_TOKEN, "wrong-token"), sleep=sleeper
    )

    with pytest.raises(WebhookError, match=r"HTTP 401 \(Invalid Webhook Token\)") as caught:
        await wrong.post("hello")

    assert not caught.value.retryable and len(webhook.requests) == 1


async def test_an_unreachable_webhook_is_retried_then_reported_by_type_only(
    http_session: aiohttp.ClientSession, sleeper: RecordingSleep
) -> None:
    async with FakeWebhook() as gone:
        url = gone.url
    dead = DiscordWebhook(http_session, url, sleep=sleeper, max_attempts=2)

    with pytest.raises(WebhookError, match=r"unreachable \(ClientConnectorError\)") as caught:
        await dead.post("hello")

    assert WEBHOOK_TOKEN not in caught.value.message and sleeper.waits == [1.0]


async def test_long_text_is_split_at_line_breaks_into_2000_character_messages(
    http_session: aiohttp.ClientSession, webhook: FakeWebhook, sleeper: RecordingSleep
) -> None:
    lines = [f"line {n:04d} " + "x" * 80 for n in range(60)]  # ~5,500 characters
    text = "\n".join(lines)

    result = await hook(http_session, webhook, sleeper).post(text)

    contents = webhook.contents()
    assert len(contents) == 3 == len(result.messages)
    assert all(len(c) <= CONTENT_LIMIT for c in contents)
    assert "\n".join(contents).split("\n") == lines  # nothing lost, no line cut in two


async def test_a_post_that_fails_midway_says_how_many_parts_went_out_and_resumes(
    http_session: aiohttp.ClientSession, webhook: FakeWebhook, sleeper: RecordingSleep
) -> None:
    text = "\n".join(["a" * 1500, "b" * 1500, "c" * 1500])
    poster = hook(http_session, webhook, sleeper, max_attempts=1)
    await poster.post("warm-up")
    webhook.messages.clear()
    # The second part hits a 500 with no retries left.
    original = webhook._answer
    calls = {"n": 0}

    def second_fails(request, body):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            webhook.fail(500)
        return original(request, body)

    webhook._answer = second_fails  # type: ignore[method-assign]
    with pytest.raises(WebhookError) as caught:
        await poster.post(text)
    assert caught.value.posted == 1

    await poster.post(text, skip=caught.value.posted)

    assert [c[0] for c in webhook.contents()] == ["a", "b", "c"]


def test_split_content_cuts_an_unbroken_run_at_the_limit() -> None:
    parts = split_content("y" * 4500)
    assert [len(p) for p in parts] == [2000, 2000, 500]
    assert split_content("   ") == []
    assert split_content("short") == ["short"]
