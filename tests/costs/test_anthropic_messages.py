"""Conductor-E's own model calls: the real SDK against the fake Messages API, and the
TOKEN_USAGE they record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.context import AppContext
from bot.integrations.anthropic_messages import (
    AnthropicError,
    AnthropicNotConfigured,
    AnthropicUnavailable,
    MessagesClient,
)
from bot.services.coordination.summary import record_completion_usage
from bot.services.costs.ledger import CostService
from bot.settings import load_settings
from tests.fakes.anthropic import FakeAnthropic

API_KEY = "sk-ant-api03-conductor-e-test-key"


def client_for(fake: FakeAnthropic, **kwargs: float) -> MessagesClient:
    settings = load_settings({"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": fake.url})
    return MessagesClient.from_settings(settings, **kwargs)  # type: ignore[arg-type]


async def test_complete_returns_text_and_usage(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply = "All quiet: 3 issues queued."
    fake_anthropic.next_usage(
        input_tokens=1200,
        output_tokens=300,
        cache_read_input_tokens=40,
        cache_creation_5m=7,
        cache_creation_1h=5,
    )
    client = client_for(fake_anthropic)
    try:
        completion = await client.complete("You summarise.", "Summarise", "claude-haiku-4-5", 256)
    finally:
        await client.close()
    assert completion.text == "All quiet: 3 issues queued."
    assert completion.model == "claude-haiku-4-5"
    assert (completion.input_tokens, completion.output_tokens) == (1200, 300)
    assert completion.cache_read_tokens == 40
    assert completion.cache_creation_tokens == 12 and completion.cache_creation_1h_tokens == 5
    assert completion.message_id and completion.stop_reason == "end_turn"
    [request] = fake_anthropic.messages_requests()
    assert "true" in (
        request.headers["x-api-key-present"],
        request.headers["authorization-present"],
    )
    assert request.headers["anthropic-version"]
    assert request.body["system"] == "You summarise."
    assert request.body["messages"] == [{"role": "user", "content": "Summarise"}]
    assert request.body["max_tokens"] == 256


@pytest.mark.parametrize(("status", "kind"), [(500, "api_error"), (529, "overloaded_error")])
async def test_server_errors_are_retried_then_reported(
    fake_anthropic: FakeAnthropic, status: int, kind: str
) -> None:
    fake_anthropic.fail(status, times=10)
    client = client_for(fake_anthropic, max_retries=1)
    try:
        with pytest.raises(AnthropicUnavailable, match=f"answered {status} \\({kind}\\)"):
            await client.complete("s", "p", "claude-haiku-4-5", 10)
    finally:
        await client.close()
    assert fake_anthropic.calls == 2  # the first try and one retry


async def test_a_retry_that_succeeds_is_invisible(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail(529, times=1)
    client = client_for(fake_anthropic, max_retries=2)
    try:
        completion = await client.complete("s", "p", "claude-haiku-4-5", 10)
    finally:
        await client.close()
    assert completion.text == "ok" and fake_anthropic.calls == 2


async def test_a_client_error_is_not_retried(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.fail(400, times=5, message="max_tokens: too large")
    client = client_for(fake_anthropic, max_retries=2)
    try:
        with pytest.raises(AnthropicError, match="answered 400") as caught:
            await client.complete("s", "p", "claude-haiku-4-5", 10)
    finally:
        await client.close()
    assert not isinstance(caught.value, AnthropicUnavailable)
    assert fake_anthropic.calls == 1
    assert API_KEY not in str(caught.value)


async def test_a_hanging_server_times_out(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.hang(times=1)
    client = client_for(fake_anthropic, timeout=0.5, max_retries=0)
    try:
        with pytest.raises(AnthropicUnavailable, match="did not answer in time"):
            await asyncio.wait_for(client.complete("s", "p", "claude-haiku-4-5", 10), 10)
    finally:
        await client.close()
    assert fake_anthropic.calls == 1


def test_no_api_key_is_a_clear_error() -> None:
    with pytest.raises(AnthropicNotConfigured, match="ANTHROPIC_API_KEY is not set"):
        MessagesClient.from_settings(load_settings({}))


async def test_a_call_is_recorded_as_conductor_e_usage_with_its_cost(
    fake_anthropic: FakeAnthropic, cost_context: Callable[..., AppContext]
) -> None:
    ctx = cost_context(clock=lambda: datetime.now(UTC))
    fake_anthropic.next_usage(input_tokens=1200, output_tokens=300)
    client = client_for(fake_anthropic)
    try:
        completion = await client.complete("s", "p", "claude-haiku-4-5-20251001", 100)
    finally:
        await client.close()

    result = await record_completion_usage(ctx, completion, repo="acme/app", issue_number=12)
    again = await record_completion_usage(ctx, completion, repo="acme/app", issue_number=12)

    assert result.stream_id == "conductor-e" and again.duplicate
    [event] = await ctx.store.read_stream("conductor-e")
    assert event.type == "TOKEN_USAGE"
    assert event.data["agentId"] == "conductor-e"
    assert event.data["model"] == "claude-haiku-4-5-20251001"
    assert event.data["costUsd"] == pytest.approx(0.0027)
    summary = await CostService(ctx).summary(1)
    [row] = summary.by_agent_model
    assert row.agent_id == "conductor-e"
    assert row.spend.computed_usd == Decimal("0.0027") and not row.spend.mismatch
    issue = await CostService(ctx).issue("acme/app", 12)
    assert issue.total.cost_usd == Decimal("0.0027")


async def test_an_unpriced_model_is_recorded_without_a_cost(
    fake_anthropic: FakeAnthropic, cost_context: Callable[..., AppContext]
) -> None:
    ctx = cost_context(clock=lambda: datetime.now(UTC))
    fake_anthropic.model_override = "claude-unreleased-7"
    client = client_for(fake_anthropic)
    try:
        completion = await client.complete("s", "p", "claude-haiku-4-5", 100)
    finally:
        await client.close()
    await record_completion_usage(ctx, completion)
    [event] = await ctx.store.read_stream("conductor-e")
    assert "costUsd" not in event.data
    summary = await CostService(ctx).summary(1)
    assert summary.unknown_models == ["claude-unreleased-7"]
    assert summary.total.cost_usd is None
