"""/merge status|now|pause|resume on the wire, against the fake GitHub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.ui.confirm import CONFIRM_ID
from store import catalogue
from tests.discord.conftest import ADMIN_USER, USER, Harness, StartBot
from tests.discord.helpers import assert_error, denials, text_of
from tests.fakes.discord import buttons, ephemeral
from tests.fakes.github import FakeGitHub
from tests.waiting import wait_until

TOKEN = "ghp_mergetest_token_0123456789abcdef"
REPO = "acme/api"


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def harness(start_bot: StartBot, github: FakeGitHub) -> Harness:
    harness = await start_bot(
        {
            "GITHUB_TOKEN": TOKEN,
            "CONDUCTOR_GITHUB_API_URL": github.url,
            "CONDUCTOR_MANAGED_REPOS": REPO,
            "CONDUCTOR_MERGE_REPOS": REPO,
        }
    )
    await harness.approve(REPO, 5)
    await harness.append("ISSUE_ASSIGNED", repo=REPO, issueNumber=5, agentId="dev-e")
    await harness.append("PR_CREATED", repo=REPO, issueNumber=5, prNumber=40)
    github.add_pull(REPO, 40, body="Closes #5")
    return harness


async def test_status_shows_each_condition_with_why(harness: Harness, github: FakeGitHub) -> None:
    github.set_check(REPO, github.head(REPO, 40), "tests", "in_progress")

    reply = await harness.reply("merge status", {"repo": REPO, "pr": 40})

    assert ephemeral(reply)
    text = text_of(reply)
    assert "✔ not a draft" in text and "✔ mergeable: no conflict" in text
    assert "✘ checks: pending: tests" in text
    assert "✘ review:" in text and "is not reviewed yet" in text
    assert github.merge_calls == []


async def test_now_asks_then_merges_the_head_it_showed(
    harness: Harness, github: FakeGitHub
) -> None:
    head = github.green(REPO, 40)  # green, but not reviewed: an admin may override that
    interaction = await harness.invoke("merge now", {"repo": REPO, "pr": 40}, user_id=ADMIN_USER)
    question = await interaction.reply()
    assert f"Merge {head[:7]}" == buttons(question)[CONFIRM_ID]["label"]
    assert github.merge_calls == []

    await harness.press(question, CONFIRM_ID, user_id=ADMIN_USER)
    await harness.fake.wait_for(lambda: len(github.merge_calls) == 1, 10)
    assert github.merge_calls == [{"number": 40, "sha": head, "merge_method": "squash"}]

    async def merged() -> int:  # recorded once GitHub has answered the merge call
        events = await harness.context.store.read_stream(f"{REPO}#5")
        return [e.type for e in events].count("MERGED")

    await wait_until(merged, timeout=10, what="the merge recorded")
    assert await merged() == 1


async def test_now_refuses_a_red_pr_without_asking(harness: Harness, github: FakeGitHub) -> None:
    github.set_check(REPO, github.head(REPO, 40), "tests", "completed", "failure")

    reply = await harness.reply("merge now", {"repo": REPO, "pr": 40}, user_id=ADMIN_USER)

    assert "Not merged" in text_of(reply) and "failed: tests (failure)" in text_of(reply)
    assert not buttons(reply) and github.merge_calls == []


async def test_now_and_pause_are_for_admins(harness: Harness) -> None:
    reply = await harness.reply("merge now", {"repo": REPO, "pr": 40}, user_id=USER)
    assert_error(reply)
    assert len(await denials(harness)) == 1


async def test_pause_and_resume_are_recorded(harness: Harness, github: FakeGitHub) -> None:
    reply = await harness.reply("merge pause", {"repo": REPO}, user_id=ADMIN_USER)
    assert "paused for acme/api" in text_of(reply)
    status = await harness.reply("merge status", {"repo": REPO, "pr": 40})
    assert "paused for acme/api" in text_of(status)
    await harness.reply("merge resume", {}, user_id=ADMIN_USER)
    events = await harness.context.store.read_stream(catalogue.MERGE_GATE_STREAM)
    assert [e.type for e in events] == ["MERGE_GATE_PAUSED", "MERGE_GATE_RESUMED"]


async def test_a_bad_repo_is_a_clear_error(harness: Harness) -> None:
    reply: dict[str, Any] = await harness.reply("merge status", {"repo": "nope", "pr": 1})
    assert_error(reply, "is not a repository")
