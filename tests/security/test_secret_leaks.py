"""No secret value ever shows up where a person or a log reader can see it.

Recognisable values are set for every secret Conductor-E knows, then the real processes run
against the local fakes and the test database: `conductor-e run` (API and bot, at DEBUG)
answering good and bad API calls, webhook deliveries and slash commands; `conductor-e
coordinate --once` syncing GitHub, asking Anthropic for a summary and posting it through the
Discord webhook; and start-ups that fail on a bad setting or an unreachable database. Their
whole stdout and stderr, every HTTP answer, every Discord message and every stored event
(data and metadata) are scanned for each secret value.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from store.events import EventStore
from tests.coordination.fake_webhook import WEBHOOK_TOKEN, FakeWebhook
from tests.discord.conftest import ADMIN_USER, USER, StartBot
from tests.discord.helpers import text_of
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import FakeDiscord
from tests.fakes.github import delivery_headers, encode, issues_payload
from tests.test_cli import clean_environment, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BOT_TOKEN = "discord-bot-SECRETLEAK-token-a1b2c3d4e5"
ANTHROPIC_KEY = "sk-ant-api03-SECRETLEAK-anthropic-key-f6a7b8"
ANTHROPIC_ADMIN_KEY = "sk-ant-admin01-SECRETLEAK-admin-key-c9d0e1"
GITHUB_TOKEN = "ghp_SECRETLEAKgithubtoken0123456789ab"
WEBHOOK_SECRET = "whsec-SECRETLEAK-github-webhook-2f3e4d"
API_TOKEN = "apitok-SECRETLEAK-dev-e-1-5a6b7c8d"
DASHBOARD_TOKEN = "dash-SECRETLEAK-dashboard-token-9e0f1a"
DB_PASSWORD = "pgpass-SECRETLEAK-database-3b4c5d"
# Each secret value, by the variable that carries it. The webhook URL's secret part is its
# token (the rest of the URL is an address, not a credential).
SECRETS = {
    "DISCORD_BOT_TOKEN": BOT_TOKEN,
    "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    "ANTHROPIC_ADMIN_KEY": ANTHROPIC_ADMIN_KEY,
    "GITHUB_TOKEN": GITHUB_TOKEN,
    "DISCORD_WEBHOOK_URL": WEBHOOK_TOKEN,
    "CONDUCTOR_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "CONDUCTOR_API_TOKENS": API_TOKEN,
    "CONDUCTOR_DASHBOARD_TOKEN": DASHBOARD_TOKEN,
    "DATABASE_URL": DB_PASSWORD,
}


def leaked(text: str, where: str) -> list[str]:
    """The variables whose secret value appears in `text` (whole or as its first half, which
    catches a value cut short), each tagged with where it was seen."""
    found = []
    for name, value in SECRETS.items():
        if value in text or value[: len(value) // 2] in text:
            found.append(f"{name} in {where}")
    return found


def base_env(tmp_path: Path) -> dict[str, str]:
    """The parent environment without any Conductor-E setting, plus a data dir."""
    env = clean_environment()
    os.chmod(tmp_path, 0o755)  # the embedded server runs as its own user when we are root
    env["CONDUCTOR_DATA_DIR"] = str(tmp_path / "data")
    return env


async def run_to_end(
    args: list[str], env: dict[str, str], out: Path, timeout: float = 120
) -> tuple[int, str]:
    """Run `conductor-e <args>` to its end; returns the exit code and stdout + stderr."""
    with out.open("w") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
        try:
            code = await asyncio.wait_for(process.wait(), timeout)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return code, out.read_text()


@pytest.fixture
async def discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord(token=BOT_TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def github() -> AsyncIterator[Any]:
    from tests.fakes.github import FakeGitHub

    async with FakeGitHub(token=GITHUB_TOKEN) as fake:
        fake.add_issue("acme/api", 1, labels=["agent-ready", "P0"])
        fake.add_issue("acme/api", 2, labels=["agent-ready"])
        yield fake


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(admin_key=ANTHROPIC_ADMIN_KEY) as fake:
        yield fake


@pytest.fixture
async def webhook() -> AsyncIterator[FakeWebhook]:
    async with FakeWebhook() as fake:
        yield fake


@pytest.fixture
def secret_env(
    tmp_path: Path,
    database_url: str,
    discord: FakeDiscord,
    github: Any,
    anthropic: FakeAnthropic,
    webhook: FakeWebhook,
) -> dict[str, str]:
    """Every secret set, every upstream a local fake, logging at its most talkative."""
    return {
        **base_env(tmp_path),
        "DATABASE_URL": database_url,
        "DISCORD_BOT_TOKEN": BOT_TOKEN,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_ADMIN_KEY": ANTHROPIC_ADMIN_KEY,
        "ANTHROPIC_BASE_URL": anthropic.url,
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "DISCORD_WEBHOOK_URL": webhook.url,
        "CONDUCTOR_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CONDUCTOR_API_TOKENS": f"dev-e-1={API_TOKEN}",
        "CONDUCTOR_DASHBOARD_TOKEN": DASHBOARD_TOKEN,
        "CONDUCTOR_GITHUB_API_URL": github.url,
        "CONDUCTOR_MANAGED_REPOS": "acme/api",
        "CONDUCTOR_DISCORD_API_URL": discord.api_url,
        "CONDUCTOR_GUILD_ID": str(discord.guild_id),
        "CONDUCTOR_ADMIN_USER_IDS": str(ADMIN_USER),
        "CONDUCTOR_AGENT_KEYS": "dev-e-1=apikey_01leakcheck",
        "CONDUCTOR_LOOP_ENABLED": "false",
        "CONDUCTOR_LOG_LEVEL": "DEBUG",
        "CONDUCTOR_HTTP_HOST": "127.0.0.1",
        "CONDUCTOR_HTTP_PORT": str(free_port()),
    }


async def wait_until_up(session: aiohttp.ClientSession, base: str, log: Path) -> None:
    async def health() -> int | None:
        try:
            async with session.get(f"{base}/health") as response:
                return response.status
        except aiohttp.ClientError:
            return None

    await wait_until(
        health,
        ok=lambda status: status == 200,
        timeout=60,
        what="/health to answer 200",
        interval=0.1,  # polling a starting process: no event to wait on
    )


async def exercise_api(session: aiohttp.ClientSession, base: str) -> list[tuple[int, str]]:
    """Good and bad calls; returns each answer's status and body."""
    heartbeat = {"type": "HEARTBEAT", "agentId": "dev-e-1", "status": "working"}
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}
    calls: list[tuple[str, str, Any, dict[str, str]]] = [
        ("POST", "/api/events", heartbeat, bearer),
        ("POST", "/api/events", heartbeat, {}),
        ("POST", "/api/events", heartbeat, {"Authorization": f"Bearer {API_TOKEN}x"}),
        ("POST", "/api/events", heartbeat, {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}),
        ("POST", "/api/events", {**heartbeat, "agentId": "dev-e-2"}, bearer),
        ("POST", "/api/events", {"type": "HEARTBEAT", "agentId": 7}, bearer),
        ("POST", "/api/events", "{not json", bearer),
        ("POST", "/api/events", {"type": "NOPE", "token": API_TOKEN}, bearer),
        ("GET", "/api/assignments/next?agentId=dev-e-1", None, {}),
        ("GET", "/api/assignments/next?agentId=dev-e-1", None, bearer),
        ("GET", "/", None, {}),
        ("GET", f"/?token={API_TOKEN}", None, {}),
        ("GET", "/", None, {"Authorization": f"Bearer {DASHBOARD_TOKEN}"}),
        ("GET", "/healthz/deep", None, {}),
        ("GET", "/metrics", None, {}),
    ]
    answers = []
    for method, path, body, headers in calls:
        data = body if isinstance(body, str) else json.dumps(body) if body is not None else None
        if data is not None:
            headers = {**headers, "Content-Type": "application/json"}
        async with session.request(method, base + path, data=data, headers=headers) as response:
            answers.append((response.status, await response.text()))
    # GitHub deliveries: unsigned, wrongly signed, signed with the secret.
    payload = encode(issues_payload("labeled", "acme/api", 5, labels=["agent-ready"]))
    for secret in (None, API_TOKEN.encode(), WEBHOOK_SECRET.encode()):
        headers = delivery_headers("issues", payload, secret)
        async with session.post(
            f"{base}/api/webhook/github", data=payload, headers=headers
        ) as response:
            answers.append((response.status, await response.text()))
    return answers


async def stored_events_text(store: EventStore) -> str:
    events = await store.read_all(0, 100_000)
    assert events, "the run stored no event: the scan would prove nothing"
    return "\n".join(
        json.dumps({"type": e.type, "stream": e.stream_id, "data": e.data, "meta": e.metadata})
        for e in events
    )


async def test_the_running_process_never_shows_a_secret(
    secret_env: dict[str, str], discord: FakeDiscord, store: EventStore, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    base = f"http://127.0.0.1:{secret_env['CONDUCTOR_HTTP_PORT']}"
    with log.open("w") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=ROOT, env=secret_env, stdout=sink, stderr=sink
        )
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until_up(session, base, log)
            answers = await exercise_api(session, base)
        await discord.wait_for(lambda: discord.connected and "queue" in discord.commands, 60)
        replies = []
        for name, options, user in (
            ("health", {}, USER),
            ("agents", {}, USER),
            ("cost issue", {"issue": f"not-an-issue {BOT_TOKEN[:4]}"}, USER),
            ("rollout restart", {"target": "api"}, USER),  # a non-admin: denied and recorded
            ("keys verify", {}, USER),
            ("keys verify", {}, ADMIN_USER),  # the Admin API, with ANTHROPIC_ADMIN_KEY
            ("rollout status", {"target": "api"}, ADMIN_USER),  # no cluster: an error
            ("health", {}, ADMIN_USER),
        ):
            interaction = await discord.invoke(name, options, user_id=user)
            replies.append(text_of(await interaction.reply(timeout=15)))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()

    statuses = [status for status, _ in answers]
    # The calls did what they were meant to: accepted, refused, forbidden, malformed.
    assert statuses[0] == 200 and statuses[1] == statuses[2] == statuses[3] == 401, answers
    assert statuses[4] == 403 and statuses[5] == statuses[6] == statuses[7] == 400, answers
    assert statuses[-3] == statuses[-2] == 401 and statuses[-1] < 300, answers
    output = log.read_text()
    assert "api: listening on 127.0.0.1" in output, output[-3000:]
    assert "DEBUG" in output or "debug" in output.lower(), "the log level was not applied"

    found = leaked(output, "the process output")
    for status, body in answers:
        found += leaked(body, f"an API answer ({status})")
    for reply in replies:
        found += leaked(reply, f"a Discord reply {reply[:60]!r}")
    for message in discord.messages.values():
        found += leaked(json.dumps(message), "a Discord message")
    found += leaked(await stored_events_text(store), "the stored events")
    assert found == []


async def test_a_coordination_run_never_shows_a_secret(
    secret_env: dict[str, str],
    github: Any,
    anthropic: FakeAnthropic,
    webhook: FakeWebhook,
    store: EventStore,
    tmp_path: Path,
) -> None:
    code, output = await run_to_end(["coordinate", "--once"], secret_env, tmp_path / "co.log")
    assert code == 0, output[-3000:]
    # The run really talked to every upstream with the secrets.
    assert github.requests and anthropic.requests and webhook.messages, output[-3000:]
    found = leaked(output, "the coordinate output")
    found += leaked(await stored_events_text(store), "the stored events")
    for message in webhook.messages:
        found += leaked(json.dumps(message), "the summary posted")
    assert found == []
    assert {e.type for e in await store.read_all(0, 1000)} >= {
        "ISSUE_APPROVED",
        "SUMMARY_POSTED",
        "COORDINATION_RUN_COMPLETED",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONDUCTOR_HTTP_PORT", "eighty"),
        ("CONDUCTOR_API_TOKENS", f"dev-e-1={API_TOKEN},bad pair"),
        ("CONDUCTOR_GUILD_ID", "the-guild"),
        ("DATABASE_URL", f"mysql://conductor:{DB_PASSWORD}@127.0.0.1/conductor"),
    ],
)
async def test_a_bad_setting_stops_start_up_without_showing_a_secret(
    secret_env: dict[str, str], tmp_path: Path, name: str, value: str
) -> None:
    code, output = await run_to_end(
        ["run"], {**secret_env, name: value}, tmp_path / "bad.log", timeout=60
    )
    assert code == 2, output
    assert name in output
    assert leaked(output, "the start-up error") == []


@pytest.mark.parametrize("command", [["migrate"], ["run"], ["coordinate", "--once"]])
async def test_an_unreachable_database_is_reported_without_its_password(
    secret_env: dict[str, str], tmp_path: Path, command: list[str]
) -> None:
    dsn = f"postgresql://conductor:{DB_PASSWORD}@127.0.0.1:{free_port()}/conductor"
    code, output = await run_to_end(command, {**secret_env, "DATABASE_URL": dsn}, tmp_path / "db")
    assert code != 0, output
    assert output.strip(), "the failure was silent"
    assert leaked(output, "the database failure") == []


async def test_upstream_refusals_in_discord_replies_never_show_a_secret(
    start_bot: StartBot, anthropic: FakeAnthropic, github: Any
) -> None:
    """Upstreams that refuse the credentials: the replies explain, the secrets stay hidden."""
    wrong_admin = ANTHROPIC_ADMIN_KEY[::-1]
    harness = await start_bot(
        {
            "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
            "ANTHROPIC_ADMIN_KEY": wrong_admin,
            "ANTHROPIC_BASE_URL": anthropic.url,
            "GITHUB_TOKEN": GITHUB_TOKEN[::-1],
            "CONDUCTOR_GITHUB_API_URL": github.url,
            "CONDUCTOR_AGENT_KEYS": "dev-e-1=apikey_01leakcheck",
        }
    )
    replies = [
        text_of(await harness.reply(name, user_id=ADMIN_USER)) for name in ("keys verify", "health")
    ]
    assert any("❌" in r or "401" in r or "invalid" in r.lower() for r in replies), replies
    found = [f for r in replies for f in leaked(r, "a Discord reply")]
    found += [f"the reversed admin key in {r!r}" for r in replies if wrong_admin[:12] in r]
    assert found == []
