"""Upstreams that misbehave during a coordination run: GitHub, the Discord webhook, Anthropic.

Each test drives the real CoordinationService on a real PostgreSQL, with the real clients
(gidgethub, aiohttp, the anthropic SDK) talking HTTP to the local fakes. A GitHub fault must
leave a finished run that says what went wrong (RunResult errors and the run record), withdraw
nothing, and the next run, with the fault cleared, must catch up without duplicates. Waits go
through injected sleeps that record them, so no test waits on the wall clock for a retry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.context import AppContext
from bot.integrations.anthropic_messages import MessagesClient
from bot.integrations.discord_webhook import DiscordWebhook
from bot.integrations.github import GitHubClient, RetryPolicy
from bot.services.coordination.loop import CoordinationService
from bot.services.coordination.result import RunResult, format_line
from bot.services.coordination.summary import Summariser
from bot.services.github.sync import SyncService
from tests.coordination.conftest import (
    ANTHROPIC_KEY,
    GITHUB_TOKEN,
    Clock,
    RecordingSleep,
    approve,
    events,
)
from tests.coordination.fake_webhook import FakeWebhook
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.github import FakeGitHub
from tests.services import coordination

READY = "agent-ready"
POLICY = RetryPolicy(request_timeout=0.3)  # max_retries 3: four attempts per request


@pytest.fixture
async def webhook() -> AsyncIterator[FakeWebhook]:
    async with FakeWebhook() as fake:
        yield fake


@pytest.fixture
async def github_fake() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(token=GITHUB_TOKEN) as fake:
        fake.add_issue("acme/api", 1, labels=[READY, "P0"])
        fake.add_issue("acme/api", 2, labels=[READY])
        fake.add_issue("acme/web", 3, labels=[READY, "priority:high"])
        yield fake
        fake.release()  # let any request still held by hang() finish before the fake stops


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake
        fake.release()


class Rig:
    """One test's context and the clients of its runs, with the sleeps they were given."""

    def __init__(
        self,
        ctx: AppContext,
        http: aiohttp.ClientSession,
        *,
        messages_timeout: float = 5.0,
        messages_retries: int = 0,
    ) -> None:
        self.ctx = ctx
        self.http = http
        self.github_sleep = RecordingSleep()
        self.webhook_sleep = RecordingSleep()
        settings = ctx.settings
        self.github = (
            GitHubClient(http, settings, policy=POLICY, sleep=self.github_sleep)
            if settings.github_token is not None
            else None
        )
        self.messages = (
            MessagesClient.from_settings(
                settings, timeout=messages_timeout, max_retries=messages_retries
            )
            if settings.anthropic_api_key is not None
            else None
        )
        assert settings.discord_webhook_url is not None
        self.poster = DiscordWebhook(http, settings.discord_webhook_url, sleep=self.webhook_sleep)

    def service(self) -> CoordinationService:
        """A fresh service per run, as the CronJob builds one per process."""
        syncer = SyncService(self.ctx, self.github) if self.github is not None else None
        return coordination(self.ctx, syncer, Summariser(self.ctx, self.messages), self.poster)

    async def run(self) -> RunResult:
        return await self.service().run()

    async def close(self) -> None:
        if self.messages is not None:
            await self.messages.close()


@pytest.fixture
async def make_rig(
    make_context: Callable[..., AppContext], http_session: aiohttp.ClientSession
) -> AsyncIterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def build(env: dict[str, str], **kwargs: Any) -> Rig:
        rig = Rig(make_context(env, clock=Clock()), http_session, **kwargs)
        rigs.append(rig)
        return rig

    yield build
    for rig in rigs:
        await rig.close()


@pytest.fixture
def github_env(webhook: FakeWebhook, github_fake: FakeGitHub) -> dict[str, str]:
    return {
        "DISCORD_WEBHOOK_URL": webhook.url,
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "CONDUCTOR_GITHUB_API_URL": github_fake.url,
        "CONDUCTOR_MANAGED_REPOS": "acme/api,acme/web",
    }


async def approvals(ctx: AppContext) -> Counter[str]:
    return Counter(e.stream_id for e in await events(ctx, "ISSUE_APPROVED"))


def inject(fake: FakeGitHub, fault: str) -> None:
    """A GitHub fault that outlasts every retry of one run."""
    if fault == "500":
        fake.fail(500, times=100, path="/search/")
    elif fault == "secondary rate limit":
        fake.secondary_rate_limit(retry_after=60, times=100)
    elif fault == "timeout":
        fake.hang(times=100)
    elif fault == "incomplete_results":
        fake.incomplete(times=100)
    else:
        raise AssertionError(f"unknown fault {fault!r}")


def clear(fake: FakeGitHub) -> None:
    fake.faults.clear()
    fake._incomplete = 0  # the fake has no public reset for these two counters
    fake._hanging = 0
    fake.release()


@pytest.mark.parametrize("fault", ["500", "secondary rate limit", "timeout", "incomplete_results"])
async def test_a_github_fault_is_reported_and_the_next_run_catches_up(
    fault: str,
    make_rig: Callable[..., Rig],
    github_env: dict[str, str],
    github_fake: FakeGitHub,
    webhook: FakeWebhook,
) -> None:
    rig = make_rig(github_env)
    first = await rig.run()
    assert first.ok, first.errors
    assert sorted(first.approved) == ["acme/api#1", "acme/api#2", "acme/web#3"]

    # A new agent-ready issue, then GitHub breaks for a whole run.
    github_fake.add_issue("acme/web", 5, labels=[READY])
    inject(github_fake, fault)
    searches_before = len(github_fake.searches())
    broken = await rig.run()
    searches_during = len(github_fake.searches()) - searches_before
    waits = list(rig.github_sleep.waits)

    # The run finished, said what went wrong, and recorded it.
    assert not broken.ok and broken.exit_code == 1 and broken.github == "incomplete"
    assert broken.errors and broken.errors[0].startswith("GitHub sync incomplete: ")
    assert GITHUB_TOKEN not in " ".join(broken.errors)
    assert "acme/web#5" not in broken.approved and broken.withdrawn == []
    (failed,) = await events(rig.ctx, "COORDINATION_RUN_FAILED")
    assert failed.data["github"] == "incomplete" and failed.data["errors"] == broken.errors
    assert format_line(broken).startswith("coordination FAILED in ")
    # Nothing approved earlier was withdrawn because GitHub could not be read.
    assert await events(rig.ctx, "ISSUE_WITHDRAWN") == []
    if fault == "500":
        assert waits == [1.0, 2.0, 4.0] and searches_during == 4  # backoff, then give up
        assert broken.github_requests == 4
    elif fault == "secondary rate limit":
        assert waits == [60.0, 60.0, 60.0] and searches_during == 4  # Retry-After honoured
        assert broken.github_requests == 4
    elif fault == "timeout":
        # Hung requests are only recorded by the fake once answered: count the client's.
        assert waits == [1.0, 2.0, 4.0] and broken.github_requests == 4
        assert "did not answer" in broken.errors[0]
    else:
        assert waits == [] and searches_during >= 1  # an answer, just not a complete one
        assert "incomplete_results" in broken.errors[0]

    # GitHub is back: the next run approves the missed issue, and only that one.
    clear(github_fake)
    caught_up = await rig.run()
    assert caught_up.ok, caught_up.errors
    assert caught_up.approved == ["acme/web#5"] and caught_up.withdrawn == []
    counts = await approvals(rig.ctx)
    assert counts == Counter(
        {s: 1 for s in ["acme/api#1", "acme/api#2", "acme/web#3", "acme/web#5"]}
    )
    assert await events(rig.ctx, "ISSUE_WITHDRAWN") == []
    assert len(await events(rig.ctx, "COORDINATION_RUN_COMPLETED")) == 2
    print(
        f"\nGitHub {fault}: faulty run made {broken.github_requests} requests "
        f"({searches_during} searches), waited {waits} s (injected), error: {broken.errors[0]!r}; "
        f"next run approved {caught_up.approved}, every issue approved once; "
        f"{len(webhook.messages)} summaries posted over 3 runs; the faulty run took "
        f"{broken.duration_ms} ms"
    )


async def test_a_rate_limited_then_failing_webhook_still_gets_the_summary_once(
    make_rig: Callable[..., Rig], webhook: FakeWebhook
) -> None:
    rig = make_rig({"DISCORD_WEBHOOK_URL": webhook.url})
    await approve(rig.ctx, "acme/api", 1, "high")
    webhook.rate_limit(retry_after=2.5)
    webhook.fail(502)
    webhook.fail(503)

    result = await rig.run()

    assert result.ok, result.errors
    assert result.summary == "posted" and result.summaries_posted == 1
    assert [r.status for r in webhook.requests] == [429, 502, 503, 200]
    # The body's fractional retry_after, not the header's rounded-up 3; then backoff 2, 4.
    assert rig.webhook_sleep.waits == [2.5, 2.0, 4.0]
    assert len(webhook.messages) == 1 and "acme/api#1" in webhook.messages[0]["content"]
    assert len(await events(rig.ctx, "SUMMARY_POSTED")) == 1

    # Nothing changed since: the next run does not post it again.
    again = await rig.run()
    assert again.ok and again.summary == "unchanged"
    assert len(webhook.messages) == 1 and len(webhook.requests) == 4
    assert len(await events(rig.ctx, "SUMMARY_POSTED")) == 1
    print(
        f"\nwebhook 429 (retry_after 2.5) then 502, 503: {len(webhook.requests)} requests, "
        f"waits {rig.webhook_sleep.waits} s (injected), 1 message posted; next run: unchanged"
    )


async def test_an_anthropic_timeout_posts_the_template_and_records_no_usage(
    make_rig: Callable[..., Rig], webhook: FakeWebhook, anthropic_fake: FakeAnthropic
) -> None:
    env = {
        "DISCORD_WEBHOOK_URL": webhook.url,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": anthropic_fake.url,
    }
    # One SDK retry: the SDK's own backoff sleep (about 0.5 s) is not injectable.
    rig = make_rig(env, messages_timeout=0.3, messages_retries=1)
    await approve(rig.ctx, "acme/api", 1, "high")
    anthropic_fake.hang(times=2)

    result = await rig.run()

    assert result.ok and result.summary == "posted" and result.summary_source == "template"
    # One call attempted (model_calls counts attempts, failed ones too), nothing spent.
    assert result.model_calls == 1 and result.cost_usd == 0 and result.input_tokens == 0
    assert any("did not answer in time" in note for note in result.notes)
    assert anthropic_fake.calls == 2  # the first try and the SDK's one retry, both timed out
    assert len(webhook.messages) == 1
    assert "acme/api#1" in webhook.messages[0]["content"]
    assert await events(rig.ctx, "TOKEN_USAGE") == []

    # Anthropic is back and the facts change: the model writes it, its usage is recorded once.
    anthropic_fake.release()
    anthropic_fake.reply = "2 issues wait: acme/api#1 and acme/api#2."
    anthropic_fake.next_usage(input_tokens=500, output_tokens=100)
    await approve(rig.ctx, "acme/api", 2)
    later = await rig.run()
    assert later.ok and later.summary_source == "model" and later.model_calls == 1
    assert later.cost_usd > 0
    assert anthropic_fake.calls == 3
    assert webhook.contents()[-1] == "2 issues wait: acme/api#1 and acme/api#2."
    (usage,) = await events(rig.ctx, "TOKEN_USAGE")
    assert (usage.data["inputTokens"], usage.data["outputTokens"]) == (500, 100)
    print(
        f"\nanthropic timeout: {anthropic_fake.calls - 1} Messages requests timed out (0.3 s "
        f"each), template posted, 0 TOKEN_USAGE; next run: model summary, 1 TOKEN_USAGE"
    )


async def test_an_incomplete_search_that_misses_an_approved_issue_withdraws_nothing(
    make_rig: Callable[..., Rig], github_env: dict[str, str], github_fake: FakeGitHub
) -> None:
    rig = make_rig(github_env)
    first = await rig.run()
    assert first.ok and len(first.approved) == 3
    github_fake.incomplete()  # the next search drops an issue we approved

    broken = await rig.run()

    assert broken.github == "incomplete" and broken.github_found == 2
    assert broken.withdrawn == [] and await events(rig.ctx, "ISSUE_WITHDRAWN") == []
    # The missing issue was not even looked up to confirm a withdrawal.
    assert not [r for r in github_fake.requests if r.path.startswith("/repos/")]
    queued = [i.stream_id for i in await rig.ctx.projections.queue(100)]
    assert sorted(queued) == ["acme/api#1", "acme/api#2", "acme/web#3"]
    print(f"\nincomplete search: {broken.github_found} of 3 found, 0 withdrawn, queue intact")


async def test_a_rejected_anthropic_key_stops_the_model_alone(
    make_rig: Callable[..., Rig], webhook: FakeWebhook, anthropic_fake: FakeAnthropic
) -> None:
    env = {
        "DISCORD_WEBHOOK_URL": webhook.url,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": anthropic_fake.url,
    }
    rig = make_rig(env)
    await approve(rig.ctx, "acme/api", 1, "high")
    anthropic_fake.fail(401, message="invalid x-api-key")

    first = await rig.run()

    assert first.ok and first.summary == "posted" and first.summary_source == "template"
    state = rig.ctx.components.get("anthropic")
    assert state is not None and state.status == "stopped"
    assert state.error is not None and "ANTHROPIC_API_KEY (401)" in state.error
    assert ANTHROPIC_KEY not in state.error

    # The facts change, but the key was rejected: no further model call until a restart.
    await approve(rig.ctx, "acme/api", 2)
    later = await rig.run()
    assert later.ok and later.summary == "posted" and later.summary_source == "template"
    assert later.model_calls == 0 and anthropic_fake.calls == 1
    assert len(webhook.messages) == 2
    assert rig.ctx.components.is_stopped("anthropic")
