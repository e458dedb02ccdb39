"""GitHub issue 8, end to end: one issue's whole life through the real `python -m bot run`.

One process (API + bot + coordination loop) on its own embedded PostgreSQL, talking only to
local fakes: Discord (gateway + REST), GitHub (REST, for the loop's sync), the Discord
webhook (the summary), Anthropic (the summary's model) and Kubernetes (/rollout restart).
Each step is asserted on what a person or an agent sees: HTTP answers, Discord replies, the
webhook's message, the progress message of the rollout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest

from bot.ui.confirm import CANCEL_ID, CONFIRM_ID
from tests.coordination.fake_webhook import FakeWebhook
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.discord import FakeDiscord, FakeInteraction, buttons
from tests.fakes.github import (
    FakeGitHub,
    delivery_headers,
    encode,
    issues_payload,
    pull_request_payload,
    pull_request_review_payload,
)
from tests.fakes.kubernetes import FakeKubernetes
from tests.test_cli import clean_environment, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
REPO = "acme/app"
AGENT = "dev-e-1"
TARGET = "conductor-e-bot"
ADMIN_USER = 600_000_000_000_000_009
WEBHOOK_SECRET = "e2e-webhook-secret-0123456789"
WAIT = 15.0


@dataclass
class Rig:
    """The running process and every fake it talks to."""

    base: str
    process: asyncio.subprocess.Process
    log_path: Path
    http: aiohttp.ClientSession
    discord: FakeDiscord
    github: FakeGitHub
    webhook: FakeWebhook
    anthropic: FakeAnthropic
    kube: FakeKubernetes

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(self.base + path) as response:
            body = await response.read()
            return response.status, json.loads(body) if body else None

    async def post_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """POST /api/events exactly as the agent runtime does: a bare JSON body."""
        async with self.http.post(self.base + "/api/events", json=event) as response:
            body = await response.json()
            assert response.status == 200, (event["type"], response.status, body)
            return dict(body)

    async def deliver(self, event: str, payload: dict[str, Any]) -> int:
        """One signed GitHub webhook delivery; returns the HTTP status."""
        body = encode(payload)
        headers = delivery_headers(event, body, WEBHOOK_SECRET.encode())
        async with self.http.post(
            self.base + "/api/webhook/github", data=body, headers=headers
        ) as response:
            return response.status

    async def until(
        self, read: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], what: str
    ) -> Any:
        """Read until `ok(value)`; fail naming `what` with the last value and the log tail."""
        return await wait_until(
            read,
            ok=ok,
            timeout=WAIT,
            what=what,
            interval=0.05,
            detail=lambda: self.log()[-3000:],
        )

    async def issue_state(self, number: int) -> str | None:
        status, body = await self.get(f"/api/issues/{REPO}/{number}")
        return body.get("state") if status == 200 else None


def text_of(message: dict[str, Any] | None) -> str:
    """Everything a person reads in a message: content, embed titles, text and fields."""
    message = message or {}
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        parts += [f"{f['name']}\n{f['value']}" for f in embed.get("fields") or []]
    return "\n".join(parts)


def summarise(body: dict[str, Any]) -> str:
    """The fake model's answer: it reads the facts Conductor-E sent and says what was done."""
    prompt = body["messages"][-1]["content"]
    if isinstance(prompt, list):
        prompt = "".join(part.get("text", "") for part in prompt)
    start = prompt.find("{")
    facts = json.loads(prompt[start:]) if start >= 0 else {}
    active = [i["stream_id"] for i in facts.get("active", {}).get("issues", [])]
    done = facts.get("since_last_summary", {}).get("done", {})
    count, issues = done.get("count", 0), done.get("issues", [])
    return f"Active: {active}. Done since the last summary: {count} {issues}"


async def _wait_up(rig: Rig) -> None:
    async def health() -> int:
        if rig.process.returncode is not None:
            raise AssertionError(f"conductor-e exited early:\n{rig.log()}")
        try:
            return (await rig.get("/health"))[0]
        except aiohttp.ClientError:
            return 0

    await rig.until(health, lambda status: status == 200, "/health")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    os.chmod(tmp_path, 0o755)  # the embedded server runs as its own user when we are root
    discord = FakeDiscord(channel_ids={"conductor-e": 700_000_000_000_000_100})
    await discord.start()
    github = FakeGitHub(token="ghp_e2e_fake_token_0123456789")
    await github.start()
    webhook = await FakeWebhook().start()
    anthropic = await FakeAnthropic().start()
    anthropic.reply = summarise
    kube = FakeKubernetes(namespace="conductor-e")
    await kube.start()
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    port = free_port()
    env = clean_environment()
    env.update(
        CONDUCTOR_DATA_DIR=str(tmp_path / "data"),
        CONDUCTOR_HTTP_HOST="127.0.0.1",
        CONDUCTOR_HTTP_PORT=str(port),
        DISCORD_BOT_TOKEN=discord.token,
        CONDUCTOR_DISCORD_API_URL=discord.api_url,
        CONDUCTOR_GUILD_ID=str(discord.guild_id),
        CONDUCTOR_ADMIN_USER_IDS=str(ADMIN_USER),
        GITHUB_TOKEN=github.token or "",
        CONDUCTOR_GITHUB_API_URL=github.url,
        CONDUCTOR_MANAGED_REPOS=REPO,
        CONDUCTOR_GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
        ANTHROPIC_API_KEY="sk-ant-api03-e2e-fake-key",
        ANTHROPIC_BASE_URL=anthropic.url,
        DISCORD_WEBHOOK_URL=webhook.url,
        CONDUCTOR_KUBECONFIG=str(kubeconfig),
        CONDUCTOR_KUBE_CONTEXT="fake",
        CONDUCTOR_NAMESPACE=kube.namespace,
        CONDUCTOR_ROLLOUT_TARGETS=TARGET,
        CONDUCTOR_LOOP_ENABLED="true",
        CONDUCTOR_LOOP_INTERVAL_SECONDS="2",
        CONDUCTOR_CONFIRM_TIMEOUT_SECONDS="30",
        CONDUCTOR_ROLLOUT_TIMEOUT_SECONDS="30",
    )
    log_path = tmp_path / "conductor-e.log"
    log_file: IO[bytes] = log_path.open("wb")  # a file, not a pipe: nobody has to drain it
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        cwd=ROOT,
        stdout=log_file,
        stderr=log_file,
    )
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    rig = Rig(
        f"http://127.0.0.1:{port}",
        process,
        log_path,
        http,
        discord,
        github,
        webhook,
        anthropic,
        kube,
    )
    try:
        yield rig
    finally:
        if process.returncode is None:
            # SIGTERM first: it stops the embedded PostgreSQL, which a kill would orphan.
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        log_file.close()
        await http.close()
        await kube.stop()
        await anthropic.stop()
        await webhook.stop()
        await github.stop()
        await discord.close()


async def _confirm(rig: Rig, question: dict[str, Any]) -> FakeInteraction:
    """Press Confirm. discord.py starts tracking the view only once the question's callback
    request has returned; a press before that is ignored, so press again until answered."""
    for _ in range(10):
        press = await rig.discord.press(question, CONFIRM_ID, user_id=ADMIN_USER)
        try:
            await press.callback(2.0)
            return press
        except (AssertionError, TimeoutError):
            continue
    raise AssertionError(f"Confirm was never answered\n{rig.log()[-3000:]}")


async def test_an_issue_goes_from_label_to_done_and_the_team_sees_it(rig: Rig) -> None:
    fake = rig.discord
    await _wait_up(rig)
    await fake.wait_for(lambda: fake.connected and "queue" in fake.commands, timeout=60)

    # 1. The issue gets the agent-ready label on GitHub: the webhook approves it, it is queued.
    issue = rig.github.add_issue(REPO, title="Fix the login page", labels=["agent-ready"])
    number = issue["number"]
    ref = f"{REPO}#{number}"
    labeled = issues_payload(
        "labeled",
        REPO,
        number,
        labels=["agent-ready"],
        label="agent-ready",
        title="Fix the login page",
    )
    loop = asyncio.get_running_loop()
    delivered = loop.time()
    assert await rig.deliver("issues", labeled) in (200, 202)

    async def queue() -> list[dict[str, Any]]:
        return list((await rig.get("/api/queue"))[1]["queue"])

    queued = await rig.until(queue, lambda q: any(i["issueNumber"] == number for i in q), "queue")
    assert loop.time() - delivered < 1.0, "the approval took more than a second"
    assert queued[0]["repo"] == REPO and queued[0]["title"] == "Fix the login page"

    # 2. /queue show lists it.
    reply = await (await fake.invoke("queue show")).reply(WAIT)
    assert f"`{ref}` [Fix the login page](https://github.com/{REPO}/issues/{number})" in text_of(
        reply
    ), reply

    # 3. The agent claims it and reports its work, as the agent runtime does.
    status, claim = await rig.get(f"/api/assignments/next?agentId={AGENT}")
    assert status == 200, claim
    assert (claim["repo"], claim["issueNumber"]) == (REPO, number), claim
    assert await rig.issue_state(number) == "assigned"
    await rig.post_event(
        {"type": "WORK_STARTED", "agentId": AGENT, "repo": REPO, "issueNumber": number}
    )
    await rig.post_event(
        {
            "type": "HEARTBEAT",
            "agentId": AGENT,
            "status": "working",
            "currentIssue": number,
            "currentRepo": REPO,
            "activeProvider": None,
            "availableProviders": [],
            "providers": [],
            "integrations": [],
        }
    )
    await rig.post_event(
        {
            "type": "TOKEN_USAGE",
            "agentId": AGENT,
            "repo": REPO,
            "issueNumber": number,
            "model": "claude-haiku-4-5",
            "inputTokens": 120_000,
            "outputTokens": 30_000,
            "costUsd": 0.27,
        }
    )
    assert await rig.issue_state(number) == "in_progress"
    pr = 40 + number
    await rig.post_event(
        {
            "type": "PR_CREATED",
            "agentId": AGENT,
            "repo": REPO,
            "issueNumber": number,
            "prNumber": pr,
        }
    )
    assert await rig.issue_state(number) == "in_review"

    # The loop runs while the work is in flight: its summary names the issue as active.
    async def contents() -> list[str]:
        return rig.webhook.contents()

    await rig.until(contents, lambda c: any(f"Active: ['{ref}']" in m for m in c), "active")

    # 4. GitHub: the review approves the PR, then it is merged; the agent reports it done.
    body = f"Closes #{number}"
    review = pull_request_review_payload(REPO, pr, "approved", body=body)
    assert await rig.deliver("pull_request_review", review) in (200, 202)

    async def stream_types() -> list[str]:
        path = f"/api/events/stream?id={REPO.replace('/', '%2F')}%23{number}"
        return [e["type"] for e in (await rig.get(path))[1]["events"]]

    await rig.until(stream_types, lambda t: "REVIEW_PASSED" in t, "REVIEW_PASSED")
    merged = pull_request_payload("closed", REPO, pr, body=body, merged=True)
    assert await rig.deliver("pull_request", merged) in (200, 202)
    await rig.until(lambda: rig.issue_state(number), lambda s: s == "deploying", "MERGED")
    rig.github.close(REPO, number)  # GitHub closes the issue its merged PR closes
    await rig.post_event(
        {
            "type": "ISSUE_DONE",
            "agentId": AGENT,
            "repo": REPO,
            "issueNumber": number,
            "prNumber": pr,
        }
    )
    assert await rig.issue_state(number) == "done"

    # 5. The next coordination run posts a summary that says the issue is done.
    def summary_says_done() -> bool:
        return any(f"Done since the last summary: 1 ['{ref}']" in c for c in rig.webhook.contents())

    await rig.until(contents, lambda c: summary_says_done(), "the summary of the done issue")
    prompts = [json.dumps(r.body) for r in rig.anthropic.messages_requests()]
    assert any(ref in p for p in prompts)

    # 6. /cost summary shows the agent's spend.
    reply = await (await fake.invoke("cost summary", {"days": 1})).reply(WAIT)
    assert AGENT in text_of(reply), reply

    # 7. /rollout restart of an allowlisted deployment, confirmed, ends with the outcome.
    rig.kube.add_deployment(TARGET)
    interaction = await fake.invoke("rollout restart", {"target": TARGET}, user_id=ADMIN_USER)
    question = await interaction.reply(WAIT)
    assert set(buttons(question)) == {CONFIRM_ID, CANCEL_ID}, question
    assert TARGET in text_of(question)
    await _confirm(rig, question)

    def outcome() -> bool:
        titles = [(e.get("title") or "") for e in (interaction.original or {}).get("embeds", [])]
        return bool(titles) and titles[0].startswith(("✅", "❌"))

    await fake.wait_for(outcome, WAIT)
    assert interaction.original is not None
    assert interaction.original["embeds"][0]["title"] == f"✅ Restarted deployment {TARGET}"

    # The process stops cleanly and never logged a secret.
    rig.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(rig.process.wait(), 30) == 0, rig.log()[-3000:]
    log = rig.log()
    for secret in (fake.token, WEBHOOK_SECRET, "sk-ant-api03-e2e-fake-key", rig.github.token):
        assert secret and secret not in log
    assert fake.schema_errors == [], fake.schema_errors
