"""/cost summary, /cost issue and /keys verify, on the wire: real discord.py against the fake
Discord, real PostgreSQL, the fake Anthropic Admin API."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import genai_prices
import pytest
from matplotlib.image import imread

from tests.discord.conftest import ADMIN_ROLE, ADMIN_USER, USER, Harness, StartBot
from tests.discord.helpers import assert_error, break_database, denials, text_of
from tests.fakes.anthropic import FakeAnthropic, UsageRecord
from tests.fakes.discord import ephemeral
from tests.usage import record_usage_on

TODAY = date(2026, 3, 10)
NOW = datetime.combine(TODAY, time(15, 0), UTC)
HAIKU = "claude-haiku-4-5"  # $1 in / $5 out per million tokens
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

UsageWriter = Callable[..., Awaitable[None]]


@pytest.fixture
async def costs(harness: Harness) -> Harness:
    """The harness with its clock at NOW, so that days in the ledger are fixed."""
    harness.context.clock = lambda: NOW
    return harness


@pytest.fixture
def record_usage(harness: Harness) -> UsageWriter:
    """Record one TOKEN_USAGE on a chosen day, projected by the store's own function.

    Appends stamp events with the server's clock; to put usage on past days the row is
    inserted with its recorded_at and projected with conductor_project, as an append does.
    """

    async def write(day: date, agent: str, model: str = HAIKU, **fields: Any) -> None:
        await record_usage_on(harness.context.pool, day, agent, model, **fields)

    return write


def sent_files(harness: Harness, name: str) -> list[bytes]:
    """The bytes of every file called `name` the bot uploaded (as Discord received them)."""
    return [data for r in harness.fake.requests for fname, data in r.files if fname == name]


def assert_chart(harness: Harness, reply: dict[str, Any]) -> None:
    """The reply carries the chart: an attachment, shown as the embed's image, a real PNG."""
    [attachment] = reply["attachments"]
    assert attachment["filename"] == "daily-spend.png"
    assert reply["embeds"][0]["image"]["url"] == "attachment://daily-spend.png"
    [png] = sent_files(harness, "daily-spend.png")
    assert png.startswith(PNG_SIGNATURE)
    pixels = imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (500, 1000)
    assert attachment["size"] == len(png)


def field(reply: dict[str, Any], name: str) -> str:
    fields = {f["name"]: f["value"] for f in reply["embeds"][0].get("fields") or []}
    assert name in fields, sorted(fields)
    return fields[name]


# --- /cost summary ---------------------------------------------------------------------------


async def test_summary_shows_agents_models_issues_and_a_chart(
    start_bot: StartBot, record_usage: UsageWriter
) -> None:
    harness = await start_bot({"CONDUCTOR_AGENT_BUDGETS_USD": "dev-e-1=5"})
    harness.context.clock = lambda: NOW
    # dev-e-1 on Haiku: 1M in + 200k out = $2.00 a day, reported right, on three days.
    for back in (0, 1, 2):
        await record_usage(
            TODAY - timedelta(days=back),
            "dev-e-1",
            inputTokens=1_000_000,
            outputTokens=200_000,
            costUsd=2.0,
            repo="acme/app",
            issueNumber=12,
        )
    # review-e-1 reports $1.50 for what costs $1.00: a mismatch (50% over).
    await record_usage(
        TODAY - timedelta(days=1),
        "review-e-1",
        inputTokens=500_000,
        outputTokens=100_000,
        costUsd=1.5,
        repo="acme/app",
        issueNumber=40,
    )
    # A model without a price, with no reported cost.
    await record_usage(TODAY, "dev-e-2", "mystery-model-9", inputTokens=1_000, outputTokens=10)

    interaction = await harness.invoke("cost summary")
    assert (await interaction.callback())["type"] == 5  # deferred: queries and a chart
    reply = await interaction.reply()

    assert ephemeral(reply)
    embed = reply["embeds"][0]
    assert embed["title"] == "Spend, last 30 days"
    description = embed["description"]
    assert description.startswith(
        "**$7.00** (some usage has no price: see Unpriced models) in 2026-02-09 to 2026-03-10 (UTC)"
    )
    assert "5 model calls" in description
    # Today $2.00 against $7.00 / 30 days = $0.2333 a day.
    assert "Today **$2.00** · daily average **$0.2333** (8.6× the average)" in description

    agents = field(reply, "By agent").splitlines()
    assert agents[0] == "`dev-e-1` $6.00 · today $2.00 of $5.00 budget"
    assert agents[1].startswith("`review-e-1` $1.00 ⚠️ reported $1.50 (+50.0%)")
    assert "`dev-e-2` cost unknown" in field(reply, "By agent")
    pairs = field(reply, "By agent and model")
    assert "`review-e-1` · `claude-haiku-4-5` · $1.00 ⚠️ reported $1.50 (+50.0%)" in pairs
    # Each agent and model says how far the agent's own figure is from ours, flagged or not.
    assert "`dev-e-1` · `claude-haiku-4-5` · $6.00 · reported $6.00 (+0.0%)" in pairs
    assert "`dev-e-2` · `mystery-model-9` (unpriced model) · cost unknown" in pairs
    issues = field(reply, "Top issues by cost").splitlines()
    assert issues[0].startswith("`acme/app#12` $6.00")
    assert "⚠️" not in issues[0]
    assert issues[1].startswith("`acme/app#40` $1.00") and "⚠️ reported $1.50" in issues[1]
    assert "`mystery-model-9`" in field(reply, "Unpriced models")
    footer = embed["footer"]["text"]
    assert footer.startswith("⚠️ reported and computed cost differ by more than 5%")
    assert f"Priced at each day's price by genai-prices {genai_prices.__version__}" in footer
    assert_chart(harness, reply)


async def test_a_sonnet_4_6_turn_costs_4_50_and_names_its_price_source(
    costs: Harness, record_usage: UsageWriter
) -> None:
    await record_usage(
        TODAY, "dev-e-1", "claude-sonnet-4-6", inputTokens=1_000_000, outputTokens=100_000
    )
    # The runtime's own turn with no known repo, issue or model: counted, shown, not dropped.
    await record_usage_on(
        costs.context.pool,
        TODAY,
        "dev-e-1",
        "",
        raw=True,
        inputTokens=1_000,
        outputTokens=100,
        costUsd=0.25,
        repo="",
        issueNumber=0,
    )

    reply = await costs.reply("cost summary", {"days": 1})

    pairs = field(reply, "By agent and model")
    assert "`dev-e-1` · `claude-sonnet-4-6` · $4.50" in pairs
    assert "`dev-e-1` · no model named (unpriced model) · $0.2500 (reported: no price)" in pairs
    assert "no model named" in field(reply, "Unpriced models")
    issues = field(reply, "Top issues by cost").splitlines()
    assert issues == ["unattributed (no issue named) $4.75 · 1,101,100 tokens"]
    assert reply["embeds"][0]["footer"]["text"].startswith(
        f"Priced at each day's price by genai-prices {genai_prices.__version__}"
    )

    unattributed = await costs.reply("cost issue", {"issue": "unattributed"})
    embed = unattributed["embeds"][0]
    assert embed["title"] == "Cost of unattributed usage"
    assert embed["description"].startswith("**$4.75** (some usage has no price")


async def test_summary_with_no_usage_says_so_with_an_empty_chart(costs: Harness) -> None:
    reply = await costs.reply("cost summary", {"days": 7})
    assert ephemeral(reply)
    embed = reply["embeds"][0]
    assert embed["title"] == "Spend, last 7 days"
    assert (
        "No token usage recorded in the last 7 days (2026-03-04 to 2026-03-10"
        in (embed["description"])
    )
    assert not embed.get("fields")
    assert_chart(costs, reply)


async def test_summary_for_one_agent_can_be_shared(
    costs: Harness, record_usage: UsageWriter
) -> None:
    await record_usage(TODAY, "dev-e-1", inputTokens=1_000_000)
    await record_usage(TODAY, "review-e-1", inputTokens=3_000_000)
    reply = await costs.reply("cost summary", {"days": 1, "agent": "review-e-1", "share": True})
    assert not ephemeral(reply)
    text = text_of(reply)
    assert reply["embeds"][0]["title"] == "Spend, last 1 day — `review-e-1`"
    assert "`review-e-1` $3.00" in text
    assert "dev-e-1" not in text
    assert_chart(costs, reply)


async def test_summary_for_an_agent_without_usage(
    costs: Harness, record_usage: UsageWriter
) -> None:
    await record_usage(TODAY, "dev-e-1", inputTokens=1_000_000)
    reply = await costs.reply("cost summary", {"agent": "nobody-1"})
    assert "No token usage recorded by `nobody-1` in the last 30 days" in text_of(reply)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"days": 0}, "days must be between 1 and 366, got 0"),
        ({"days": 400}, "days must be between 1 and 366, got 400"),
        ({"agent": "not an agent!"}, "is not an agent id"),
    ],
)
async def test_summary_bad_option_values(
    costs: Harness, options: dict[str, Any], message: str
) -> None:
    interaction = await costs.invoke("cost summary", options)
    assert (await interaction.callback())["type"] == 4  # refused at once, not "thinking…"
    assert_error(await interaction.reply(), message)
    assert sent_files(costs, "daily-spend.png") == []


async def test_summary_database_down(costs: Harness) -> None:
    await break_database(costs)
    assert_error(await costs.reply("cost summary", {"share": True}), "PostgreSQL is unavailable")


async def test_summary_autocompletes_agents(costs: Harness) -> None:
    await costs.append("HEARTBEAT", agentId="dev-e-1", status="idle")
    await costs.append("HEARTBEAT", agentId="review-e-1", status="idle")
    choices = await costs.fake.autocomplete("cost summary", {"agent": "rev"}, "agent")
    assert [c["value"] for c in choices] == ["review-e-1"]


# --- /cost issue -----------------------------------------------------------------------------


async def test_issue_cost_by_agent_and_model(costs: Harness, record_usage: UsageWriter) -> None:
    for agent, tokens, reported in (("dev-e-1", 2_000_000, 2.0), ("review-e-1", 1_000_000, 1.2)):
        await record_usage(
            TODAY,
            agent,
            inputTokens=tokens,
            costUsd=reported,
            repo="acme/app",
            issueNumber=12,
        )
    await record_usage(TODAY, "dev-e-1", inputTokens=5_000_000, repo="acme/app", issueNumber=13)

    reply = await costs.reply("cost issue", {"issue": "https://github.com/acme/app/issues/12"})

    assert ephemeral(reply)
    embed = reply["embeds"][0]
    assert embed["title"] == "Cost of acme/app#12"
    assert embed["description"] == (
        "**$3.00** ⚠️ reported $3.20 (+6.7%) · 2 model calls · 3,000,000 tokens"
    )
    agents = field(reply, "By agent").splitlines()
    assert agents[0] == "`dev-e-1` $2.00 · 2,000,000 tokens"
    assert agents[1].startswith("`review-e-1` $1.00 ⚠️ reported $1.20 (+20.0%)")
    assert "`dev-e-1` · `claude-haiku-4-5` · $2.00 · reported $2.00 (+0.0%)" in field(
        reply, "By agent and model"
    )
    assert "⚠️ reported and computed cost differ" in embed["footer"]["text"]
    assert reply["attachments"] == []


async def test_issue_without_usage(costs: Harness) -> None:
    reply = await costs.reply("cost issue", {"issue": "acme/app#99", "share": True})
    assert not ephemeral(reply)
    assert reply["embeds"][0]["description"] == "No token usage recorded for `acme/app#99`."


async def test_issue_bad_reference(costs: Harness) -> None:
    assert_error(await costs.reply("cost issue", {"issue": "acme/app"}), "is not an issue")


async def test_issue_database_down(costs: Harness) -> None:
    await break_database(costs)
    assert_error(await costs.reply("cost issue", {"issue": "acme/app#1"}), "unavailable")


async def test_issue_autocompletes_known_issues(costs: Harness) -> None:
    await costs.approve("acme/app", 12, title="Login fails")
    await costs.approve("other/tool", 3)
    choices = await costs.fake.autocomplete("cost issue", {"issue": "login"}, "issue")
    assert [c["value"] for c in choices] == ["acme/app#12"]


# --- /keys verify ----------------------------------------------------------------------------


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(clock=lambda: NOW) as fake:
        yield fake


def keys_env(fake: FakeAnthropic, keys: str) -> dict[str, str]:
    return {
        "ANTHROPIC_ADMIN_KEY": fake.admin_key,
        "ANTHROPIC_BASE_URL": fake.url,
        "CONDUCTOR_AGENT_KEYS": keys,
    }


async def keys_bot(start_bot: StartBot, fake: FakeAnthropic, keys: str) -> Harness:
    harness = await start_bot(keys_env(fake, keys))
    harness.context.clock = lambda: NOW
    return harness


def key_usage(fake: FakeAnthropic, key_id: str, tokens: int) -> None:
    fake.usage.append(
        UsageRecord(
            TODAY,
            key_id,
            HAIKU,
            uncached_input_tokens=tokens - tokens // 10,
            output_tokens=tokens // 10,
        )
    )


async def test_keys_verify_passes_when_each_agent_has_its_own_key(
    start_bot: StartBot, anthropic: FakeAnthropic, record_usage: UsageWriter
) -> None:
    harness = await keys_bot(start_bot, anthropic, "dev-e-1=apikey_dev1,review-e-1=review-e-1-key")
    anthropic.register_key("dev-e-1-key", key_id="apikey_dev1")
    anthropic.register_key("review-e-1-key", key_id="apikey_rev1")
    await record_usage(TODAY, "dev-e-1", inputTokens=900_000, outputTokens=100_000)
    await record_usage(TODAY, "review-e-1", inputTokens=45_000, outputTokens=5_000)
    key_usage(anthropic, "apikey_dev1", 1_000_000)
    key_usage(anthropic, "apikey_rev1", 50_000)

    interaction = await harness.invoke("keys verify", role_ids=[ADMIN_ROLE])
    assert (await interaction.callback())["type"] == 5  # deferred before the Admin API
    reply = await interaction.reply()

    assert ephemeral(reply)
    embed = reply["embeds"][0]
    assert embed["title"].startswith("API keys verified")
    assert embed["description"].splitlines() == [
        "✅ dev-e-1 (dev-e-1-key): own active key; 1,000,000 tokens, ledger 1,000,000",
        "✅ review-e-1 (review-e-1-key): own active key; 50,000 tokens, ledger 50,000",
    ]
    assert not embed.get("fields")
    assert embed["color"] == 0x2ECC71  # green
    assert anthropic.admin_key not in str(reply)


async def test_keys_verify_reports_a_shared_key(
    start_bot: StartBot, anthropic: FakeAnthropic, record_usage: UsageWriter
) -> None:
    harness = await keys_bot(start_bot, anthropic, "dev-e-1=apikey_dev1,dev-e-2=apikey_dev1")
    anthropic.register_key("shared", key_id="apikey_dev1")
    reply = await harness.reply("keys verify", user_id=ADMIN_USER)
    embed = reply["embeds"][0]
    assert embed["title"] == "API key check failed: 1 problem found"
    assert "❌ dev-e-1 and dev-e-2 share the API key 'apikey_dev1'" in embed["description"]
    assert embed["color"] == 0xE74C3C  # red


async def test_keys_verify_admin_api_down_says_it_could_not_verify(
    start_bot: StartBot, anthropic: FakeAnthropic, record_usage: UsageWriter
) -> None:
    harness = await keys_bot(start_bot, anthropic, "dev-e-1=apikey_dev1")
    anthropic.fail_admin(500, times=5)
    reply = await harness.reply("keys verify", user_id=ADMIN_USER)
    assert ephemeral(reply)
    embed = reply["embeds"][0]
    assert embed["title"] == "API keys could not be verified"
    assert (
        "❔ could not verify: Anthropic Admin API /v1/organizations/api_keys answered 500"
        in (embed["description"])
    )
    not_checked = field(reply, "Could not verify")
    assert "whether each mapped key exists and is active" in not_checked
    assert anthropic.admin_key not in str(reply)


async def test_keys_verify_without_an_admin_key(start_bot: StartBot) -> None:
    harness = await start_bot({"CONDUCTOR_AGENT_KEYS": "dev-e-1=apikey_dev1"})
    reply = await harness.reply("keys verify", role_ids=[ADMIN_ROLE])
    assert reply["embeds"][0]["title"] == "API keys could not be verified"
    assert "could not verify: ANTHROPIC_ADMIN_KEY not set" in field(reply, "Could not verify")


async def test_keys_verify_is_for_admins_only(costs: Harness) -> None:
    reply = await costs.reply("keys verify", user_id=USER)
    assert_error(reply, "You may not run /keys verify", "not allowed to run keys commands")
    [denial] = await denials(costs)
    assert denial.data["action"] == "/keys verify"
