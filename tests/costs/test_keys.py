"""`verify_keys` against the fake Admin API: each agent on its own active key, and the usage
the organisation saw per key agreeing with our ledger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bot.context import AppContext
from bot.services.costs.keys import verify_keys
from bot.services.costs.ledger import CostService
from tests.costs.conftest import TODAY, UsageWriter
from tests.fakes.anthropic import FakeAnthropic, UsageRecord

MODEL = "claude-haiku-4-5"


def env(fake: FakeAnthropic, keys: str, **extra: str) -> dict[str, str]:
    return {
        "ANTHROPIC_ADMIN_KEY": fake.admin_key,
        "ANTHROPIC_BASE_URL": fake.url,
        "CONDUCTOR_AGENT_KEYS": keys,
        **extra,
    }


def key_usage(fake: FakeAnthropic, key_id: str | None, tokens: int, days_ago: int = 0) -> None:
    fake.usage.append(
        UsageRecord(
            TODAY - timedelta(days=days_ago),
            key_id,
            MODEL,
            uncached_input_tokens=tokens - tokens // 10,
            output_tokens=tokens // 10,
        )
    )


async def setup_two_agents(fake: FakeAnthropic, record_usage: UsageWriter) -> None:
    a = fake.register_key("dev-e-1-key", key_id="apikey_dev1")
    b = fake.register_key("review-e-1-key", key_id="apikey_rev1")
    for i in range(150):  # more than one page of keys
        fake.register_key(f"other-{i}", key_id=f"apikey_other{i:03d}", status="archived")
    await record_usage(TODAY, "dev-e-1", MODEL, inputTokens=900_000, outputTokens=100_000)
    await record_usage(
        TODAY - timedelta(days=2), "review-e-1", MODEL, inputTokens=45_000, outputTokens=5_000
    )
    key_usage(fake, a.id, 1_010_000)  # 1% above the ledger: within tolerance
    key_usage(fake, b.id, 50_500, days_ago=2)  # 500 tokens off: within 1,000


async def test_separate_keys_pass(
    fake_anthropic: FakeAnthropic,
    cost_context: Callable[..., AppContext],
    record_usage: UsageWriter,
) -> None:
    await setup_two_agents(fake_anthropic, record_usage)
    ctx = cost_context(env(fake_anthropic, "dev-e-1=apikey_dev1,review-e-1=review-e-1-key"))

    report = await verify_keys(CostService(ctx))

    assert report.ok and report.verified, report.lines
    assert report.lines == [
        "✅ dev-e-1 (dev-e-1-key): own active key; 1,010,000 tokens, ledger 1,000,000",
        "✅ review-e-1 (review-e-1-key): own active key; 50,500 tokens, ledger 50,000",
    ]
    assert report.headline.startswith("API keys verified")
    keys_pages = [r for r in fake_anthropic.requests if r.path.endswith("/api_keys")]
    assert len(keys_pages) == 2
    [usage_request] = [r for r in fake_anthropic.requests if r.path.endswith("/messages")]
    query = dict(usage_request.query)
    assert query["bucket_width"] == "1d" and query["starting_at"] == "2026-03-04T00:00:00Z"
    assert query["ending_at"] == "2026-03-11T00:00:00Z"
    assert [v for k, v in usage_request.query if k == "group_by[]"] == ["api_key_id", "model"]
    assert usage_request.headers["anthropic-version"] == "2023-06-01"


async def test_a_shared_key_fails(
    fake_anthropic: FakeAnthropic,
    cost_context: Callable[..., AppContext],
    record_usage: UsageWriter,
) -> None:
    await setup_two_agents(fake_anthropic, record_usage)
    ctx = cost_context(env(fake_anthropic, "dev-e-1=apikey_dev1,review-e-1=apikey_dev1"))
    report = await verify_keys(CostService(ctx))
    assert not report.ok
    assert "❌ dev-e-1 and review-e-1 share the API key 'apikey_dev1'" in report.lines
    # The same key reached once by id and once by name is caught too.
    ctx = cost_context(env(fake_anthropic, "dev-e-1=apikey_dev1,review-e-1=dev-e-1-key"))
    report = await verify_keys(CostService(ctx))
    assert "❌ dev-e-1 and review-e-1 share the API key apikey_dev1" in report.lines


async def test_an_agent_without_a_key_fails(
    fake_anthropic: FakeAnthropic,
    cost_context: Callable[..., AppContext],
    record_usage: UsageWriter,
) -> None:
    await setup_two_agents(fake_anthropic, record_usage)
    ctx = cost_context(
        env(fake_anthropic, "dev-e-1=apikey_dev1", CONDUCTOR_AGENT_BUDGETS_USD="dev-e-2=5")
    )
    report = await verify_keys(CostService(ctx))
    assert not report.ok
    assert "❌ dev-e-2 has no API key mapped in CONDUCTOR_AGENT_KEYS" in report.lines
    assert (
        "❌ review-e-1 has no API key mapped in CONDUCTOR_AGENT_KEYS (50,000 tokens in the ledger)"
        in report.lines
    )
    # ... and the key review-e-1 really used is usage on a key no agent is mapped to.
    assert (
        "❌ usage on API key 'review-e-1-key' (apikey_rev1) that no agent is mapped to: "
        "50,500 tokens" in report.lines
    )


async def test_usage_on_an_unmapped_key_fails(
    fake_anthropic: FakeAnthropic,
    cost_context: Callable[..., AppContext],
    record_usage: UsageWriter,
) -> None:
    await setup_two_agents(fake_anthropic, record_usage)
    stray = fake_anthropic.register_key("laptop", key_id="apikey_laptop")
    key_usage(fake_anthropic, stray.id, 77_000, days_ago=1)
    key_usage(fake_anthropic, None, 3_000)  # Workbench: a warning, not a failure
    ctx = cost_context(env(fake_anthropic, "dev-e-1=apikey_dev1,review-e-1=apikey_rev1"))
    report = await verify_keys(CostService(ctx))
    assert not report.ok
    assert [c.text for c in report.checks if c.status == "fail"] == [
        "usage on API key 'laptop' (apikey_laptop) that no agent is mapped to: 77,000 tokens"
    ]
    assert "⚠️ 3,000 tokens used without an API key (Console/Workbench)" in report.lines


async def test_a_ledger_mismatch_fails(
    fake_anthropic: FakeAnthropic,
    cost_context: Callable[..., AppContext],
    record_usage: UsageWriter,
) -> None:
    await setup_two_agents(fake_anthropic, record_usage)
    key_usage(fake_anthropic, "apikey_dev1", 100_000)  # 1,110,000 against 1,000,000: 11%
    ctx = cost_context(env(fake_anthropic, "dev-e-1=apikey_dev1,review-e-1=apikey_rev1"))
    report = await verify_keys(CostService(ctx))
    assert not report.ok
    assert report.lines[0] == (
        "❌ dev-e-1 (dev-e-1-key): the key used 1,110,000 tokens, the ledger says 1,000,000 "
        "(more than 2% or 1,000 tokens apart)"
    )
    assert report.lines[1].startswith("✅ review-e-1")


async def test_an_agent_whose_key_shows_nothing_fails(
    fake_anthropic: FakeAnthropic,
    cost_context: Callable[..., AppContext],
    record_usage: UsageWriter,
) -> None:
    fake_anthropic.register_key("dev-e-1-key", key_id="apikey_dev1")
    fake_anthropic.register_key("old", key_id="apikey_old", status="archived")
    await record_usage(TODAY, "dev-e-1", MODEL, inputTokens=5_000, outputTokens=0)
    ctx = cost_context(env(fake_anthropic, "dev-e-1=apikey_dev1,dev-e-2=old,dev-e-3=nope"))
    report = await verify_keys(CostService(ctx))
    assert report.lines == [
        "❌ dev-e-2: API key 'old' (apikey_old) is archived",
        "❌ dev-e-3: API key 'nope' does not exist in the organisation",
        "❌ dev-e-1 (dev-e-1-key): the ledger has 5,000 tokens but its key shows no usage — "
        "is the agent using another key?",
    ]


async def test_admin_api_error_is_could_not_verify(
    fake_anthropic: FakeAnthropic,
    cost_context: Callable[..., AppContext],
    record_usage: UsageWriter,
) -> None:
    await setup_two_agents(fake_anthropic, record_usage)
    fake_anthropic.fail_admin(500, message="internal")
    ctx = cost_context(env(fake_anthropic, "dev-e-1=apikey_dev1,review-e-1=apikey_rev1"))
    report = await verify_keys(CostService(ctx))
    assert not report.ok and not report.verified
    assert report.lines == [
        "❔ could not verify: Anthropic Admin API /v1/organizations/api_keys answered 500: "
        "api_error: internal"
    ]
    assert report.headline == "API keys could not be verified"
    # A wrong admin key is no pass either, and the key never shows in the report.
    ctx = cost_context(
        {
            **env(fake_anthropic, "dev-e-1=apikey_dev1"),
            "ANTHROPIC_ADMIN_KEY": "sk-ant-admin01-wrong",
        }
    )
    report = await verify_keys(CostService(ctx))
    assert not report.ok
    assert "answered 401" in report.lines[-1] and "wrong" not in " ".join(report.lines)


async def test_no_admin_key_is_could_not_verify(
    cost_context: Callable[..., AppContext], record_usage: UsageWriter
) -> None:
    ctx = cost_context({"CONDUCTOR_AGENT_KEYS": "dev-e-1=a,dev-e-2=b"})
    report = await verify_keys(CostService(ctx))
    assert not report.ok and not report.verified
    assert report.lines == ["❔ could not verify: ANTHROPIC_ADMIN_KEY not set"]


async def test_usage_report_pages_are_followed(
    fake_anthropic: FakeAnthropic,
    cost_context: Callable[..., AppContext],
    record_usage: UsageWriter,
) -> None:
    fake_anthropic.register_key("dev-e-1-key", key_id="apikey_dev1")
    await record_usage(TODAY - timedelta(days=35), "dev-e-1", MODEL, inputTokens=20_000)
    await record_usage(TODAY, "dev-e-1", MODEL, inputTokens=20_000)
    key_usage(fake_anthropic, "apikey_dev1", 20_000, days_ago=35)
    key_usage(fake_anthropic, "apikey_dev1", 20_000)
    ctx = cost_context(env(fake_anthropic, "dev-e-1=apikey_dev1"))
    report = await verify_keys(CostService(ctx), days=40)
    assert report.ok, report.lines
    assert report.lines == [
        "✅ dev-e-1 (dev-e-1-key): own active key; 40,000 tokens, ledger 40,000"
    ]
    pages = [r for r in fake_anthropic.requests if r.path.endswith("/usage_report/messages")]
    assert len(pages) == 2 and dict(pages[1].query)["page"].startswith("page_")
