"""The summary: the model only when the facts change, the template when it fails, the cost
recorded, and a summary the webhook could not take posted on the next run."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest

from bot.context import AppContext
from bot.services.coordination.loop import STATE_KEY, CoordinationService
from bot.services.coordination.summary import Facts, IssueFact, template
from bot.services.costs.ledger import CostService
from tests.coordination.conftest import (
    ANTHROPIC_KEY,
    Clock,
    RecordingSleep,
    approve,
    events,
    record,
    start_work,
)
from tests.coordination.fake_webhook import FakeWebhook
from tests.fakes.anthropic import FakeAnthropic

REPO = "acme/api"


@pytest.fixture
def model_env(env: dict[str, str], anthropic_fake: FakeAnthropic) -> dict[str, str]:
    return {**env, "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": anthropic_fake.url}


@pytest.fixture
def model_ctx(
    make_context: Callable[..., AppContext], model_env: dict[str, str], clock: Clock
) -> AppContext:
    return make_context(model_env, clock=clock)


async def test_the_model_writes_the_summary_only_when_the_facts_change(
    model_ctx: AppContext,
    anthropic_fake: FakeAnthropic,
    webhook: FakeWebhook,
    make_service: Callable[..., CoordinationService],
) -> None:
    await approve(model_ctx, REPO, 1, "critical")
    anthropic_fake.reply = "1 critical issue waits: acme/api#1."
    anthropic_fake.next_usage(input_tokens=600, output_tokens=150)
    service = make_service(model_ctx)

    first = await service.run()

    assert first.ok, first.errors
    assert anthropic_fake.calls == 1
    assert webhook.contents() == ["1 critical issue waits: acme/api#1."]
    assert first.summary == "posted" and first.summary_source == "model"
    assert first.model_calls == 1 and first.cost_usd == Decimal("0.00135")
    # The model saw the facts, computed in code.
    (request,) = anthropic_fake.messages_requests()
    assert request.body["model"] == "claude-haiku-4-5"
    facts = json.loads(request.body["messages"][0]["content"])
    assert facts["queue"]["by_priority"] == {"critical": 1}
    assert facts["queue"]["next"][0]["stream_id"] == "acme/api#1"
    # Its cost is on the ledger as conductor-e's TOKEN_USAGE.
    (usage,) = await events(model_ctx, "TOKEN_USAGE")
    assert usage.stream_id == "conductor-e"
    assert usage.data["model"] == "claude-haiku-4-5"
    assert (usage.data["inputTokens"], usage.data["outputTokens"]) == (600, 150)
    assert usage.data["costUsd"] == pytest.approx(0.00135)
    (posted,) = await events(model_ctx, "SUMMARY_POSTED")
    assert posted.data["text"] == "1 critical issue waits: acme/api#1."

    again = await service.run()

    assert again.ok and again.summary == "unchanged" and again.model_calls == 0
    assert anthropic_fake.calls == 1 and len(webhook.messages) == 1
    assert len(await events(model_ctx, "SUMMARY_POSTED")) == 1

    await approve(model_ctx, REPO, 2)
    anthropic_fake.reply = "2 issues wait."
    third = await service.run()

    assert third.summary == "posted" and anthropic_fake.calls == 2
    assert webhook.contents()[-1] == "2 issues wait."
    facts = json.loads(anthropic_fake.messages_requests()[-1].body["messages"][0]["content"])
    assert facts["since_last_summary"]["approved"] == {"count": 1, "issues": ["acme/api#2"]}
    assert len(await events(model_ctx, "TOKEN_USAGE")) == 2


async def test_work_approved_and_done_between_two_runs_is_still_reported(
    ctx: AppContext,
    webhook: FakeWebhook,
    make_service: Callable[..., CoordinationService],
) -> None:
    service = make_service(ctx)
    first = await service.run()
    assert first.summary == "posted"
    # Between two runs an issue comes and goes: the queue looks as it did, but it is news.
    await start_work(ctx, REPO, 4, "dev-e-1")
    await record(ctx, "ISSUE_DONE", repo=REPO, issueNumber=4, agentId="dev-e-1")

    second = await service.run()

    assert second.summary == "posted", second.summary
    assert "acme/api#4" in webhook.contents()[-1]
    third = await service.run()
    assert third.summary == "unchanged"


@pytest.mark.parametrize("status", [500, 529])
async def test_a_failing_model_gives_the_template_and_the_run_still_succeeds(
    status: int,
    model_ctx: AppContext,
    anthropic_fake: FakeAnthropic,
    webhook: FakeWebhook,
    make_service: Callable[..., CoordinationService],
) -> None:
    await approve(model_ctx, REPO, 1, "high")
    anthropic_fake.fail(status)

    result = await make_service(model_ctx).run()

    assert result.ok, result.errors
    assert result.summary == "posted" and result.summary_source == "template"
    (content,) = webhook.contents()
    assert content.startswith("**Conductor-E status**") and "Queue: 1 (1 high)" in content
    assert await events(model_ctx, "TOKEN_USAGE") == []
    assert any("model failed" in note for note in result.notes)


async def test_a_model_that_does_not_answer_in_time_gives_the_template(
    make_context: Callable[..., AppContext],
    model_env: dict[str, str],
    anthropic_fake: FakeAnthropic,
    webhook: FakeWebhook,
    make_service: Callable[..., CoordinationService],
) -> None:
    ctx = make_context(model_env)
    await approve(ctx, REPO, 1)
    anthropic_fake.hang()

    result = await make_service(ctx, messages_timeout=0.3).run()

    assert result.ok and result.summary_source == "template"
    assert webhook.contents()[0].startswith("**Conductor-E status**")
    assert await events(ctx, "TOKEN_USAGE") == []


async def test_without_an_api_key_the_template_is_posted_and_no_model_is_called(
    ctx: AppContext,
    anthropic_fake: FakeAnthropic,
    webhook: FakeWebhook,
    make_service: Callable[..., CoordinationService],
) -> None:
    await start_work(ctx, REPO, 3, "dev-e-1")

    result = await make_service(ctx).run()

    assert result.ok and result.summary_source == "template" and result.model_calls == 0
    assert anthropic_fake.calls == 0
    assert "acme/api#3 — Issue 3 (normal, in_progress, dev-e-1)" in webhook.contents()[0]


async def test_a_summary_discord_would_not_take_is_posted_on_the_next_run(
    model_ctx: AppContext,
    anthropic_fake: FakeAnthropic,
    webhook: FakeWebhook,
    sleeper: RecordingSleep,
    make_service: Callable[..., CoordinationService],
) -> None:
    await approve(model_ctx, REPO, 1)
    anthropic_fake.reply = "one issue waits"
    webhook.fail(500, times=5)  # every attempt of this run
    service = make_service(model_ctx)

    failed = await service.run()

    assert not failed.ok and failed.exit_code == 1
    assert failed.summary == "pending"
    assert "summary not posted, kept for the next run" in failed.errors[0]
    assert webhook.messages == [] and sleeper.waits == [1.0, 2.0, 4.0, 8.0]
    assert await events(model_ctx, "SUMMARY_POSTED") == []
    (run,) = await events(model_ctx, "COORDINATION_RUN_FAILED")
    assert run.data["summary"] == "pending"
    state = await model_ctx.state.get(STATE_KEY)
    assert [p["text"] for p in state["pending"]] == ["one issue waits"]

    recovered = await service.run()

    assert recovered.ok and recovered.summary == "posted"
    assert webhook.contents() == ["one issue waits"]
    assert anthropic_fake.calls == 1  # the kept text, not a new model call
    assert len(await events(model_ctx, "SUMMARY_POSTED")) == 1
    assert (await model_ctx.state.get(STATE_KEY))["pending"] == []

    third = await service.run()
    assert third.summary == "unchanged" and len(webhook.messages) == 1


async def test_a_rate_limited_summary_is_posted_once_after_the_wait(
    ctx: AppContext,
    webhook: FakeWebhook,
    sleeper: RecordingSleep,
    make_service: Callable[..., CoordinationService],
) -> None:
    await approve(ctx, REPO, 1)
    webhook.rate_limit(retry_after=1.5)

    result = await make_service(ctx).run()

    assert result.ok and result.summary == "posted"
    assert len(webhook.messages) == 1 and [r.status for r in webhook.requests] == [429, 200]
    assert sleeper.waits == [1.5]
    assert len(await events(ctx, "SUMMARY_POSTED")) == 1


async def test_summaries_kept_while_discord_is_down_are_all_posted_in_order(
    ctx: AppContext, webhook: FakeWebhook, make_service: Callable[..., CoordinationService]
) -> None:
    service = make_service(ctx)
    await approve(ctx, REPO, 1)
    webhook.fail(500, times=5)
    assert (await service.run()).summary == "pending"
    await approve(ctx, REPO, 2)
    webhook.fail(500, times=5)
    assert (await service.run()).summary == "pending"

    result = await service.run()

    assert result.summaries_posted == 2
    first, second = webhook.contents()
    assert "Queue: 1" in first and "Queue: 2" in second


def test_the_digest_ignores_deltas_and_follows_the_state_of_the_work() -> None:
    base = Facts(queue_depth={"normal": 1}, queued=["a/b#1"], health={"postgres": True})
    same = Facts(
        queue_depth={"normal": 1},
        queued=["a/b#1"],
        health={"postgres": True},
        approved_since=["a/b#1"],
        done_since=["a/b#9"],
        top_of_queue=[IssueFact("a/b#1", "t")],
    )
    assert base.digest() == same.digest()
    swapped = Facts(queue_depth={"normal": 1}, queued=["a/b#2"], health={"postgres": True})
    assert base.digest() != swapped.digest()
    down = Facts(queue_depth={"normal": 1}, queued=["a/b#1"], health={"postgres": False})
    assert base.digest() != down.digest()


def test_the_template_leads_with_what_needs_a_person() -> None:
    text = template(
        Facts(
            queue_depth={"critical": 1, "normal": 2},
            escalated=[IssueFact("a/b#4")],
            health={"postgres": True, "github": False},
            stuck=["a/b#5"],
        )
    )
    lines = text.splitlines()
    assert lines[1] == "⚠️ Down: github"
    assert lines[2].startswith("🚨 Escalated, waiting for a person: a/b#4")
    assert "Queue: 3 (1 critical, 2 normal)" in text


async def test_facts_record_in_the_state_only_after_a_post(
    ctx: AppContext, webhook: FakeWebhook, make_service: Callable[..., CoordinationService]
) -> None:
    await record(ctx, "ISSUE_APPROVED", repo=REPO, issueNumber=1)
    result = await make_service(ctx).run()
    state = await ctx.state.get(STATE_KEY)
    assert result.summary == "posted"
    assert state["posted_digest"] and state["pending"] == []
    assert state["since_position"] == await ctx.store.head_position() - 2  # + summary, run


async def test_the_summary_says_todays_spend_from_the_cost_ledger(
    ctx: AppContext, webhook: FakeWebhook, make_service: Callable[..., CoordinationService]
) -> None:
    await approve(ctx, REPO, 1, "high")
    # A Sonnet 4.6 turn the agent reported at $0: the summary says ours, as /cost does.
    await record(
        ctx,
        "TOKEN_USAGE",
        agentId="dev-e-1",
        model="claude-sonnet-4-6",
        inputTokens=1_000_000,
        outputTokens=100_000,
        costUsd=0.0,
    )

    result = await make_service(ctx).run()

    assert result.ok, result.errors
    (content,) = webhook.contents()
    assert "Spend today: $4.50" in content.splitlines()
    ledger = await CostService(ctx).summary(1)
    assert ledger.today_usd == Decimal("4.5")


def test_the_template_says_when_some_spend_has_no_price() -> None:
    text = template(Facts(spend_today_usd=Decimal("1.25"), spend_basis="partly priced"))
    assert "Spend today: $1.25 (some usage has no price)" in text.splitlines()
    assert "Spend today" not in template(Facts())
