"""The loop and .rig-agent.yaml: a new repo is read before its issues are queued, every known
repo is re-read each run at the cost of 304s only, and the run and its summary report routing
problems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import aiohttp
import pytest

from bot.context import AppContext
from bot.services.work.repo_config import CONFIG_PATH
from bot.wiring import Services
from tests.coordination.conftest import GITHUB_TOKEN, Clock, events, github_client
from tests.coordination.fake_webhook import FakeWebhook
from tests.fakes.github import FakeGitHub

READY = "agent-ready"


@pytest.fixture
def loop_context(
    make_context: Callable[..., AppContext],
    env: dict[str, str],
    github_fake: FakeGitHub,
    clock: Clock,
) -> AppContext:
    github_fake.add_issue("acme/api", 1, labels=[READY])
    github_fake.add_issue("acme/ios", 2, labels=[READY])
    github_fake.add_issue("acme/docs", 3, labels=[READY])
    github_fake.set_file("acme/api", CONFIG_PATH, "stack: python\ntestCommand: pytest\n")
    github_fake.set_file("acme/ios", CONFIG_PATH, "stack: ios\nescalate: [requires-macos]\n")
    settings = {
        **env,
        "GITHUB_TOKEN": GITHUB_TOKEN,
        "CONDUCTOR_GITHUB_API_URL": github_fake.url,
        "CONDUCTOR_MANAGED_REPOS": "acme/api,acme/ios,acme/docs",
    }
    return make_context(settings, clock=clock)


async def test_the_loop_reads_configs_first_and_rereads_them_for_free(
    loop_context: AppContext,
    github_fake: FakeGitHub,
    webhook: FakeWebhook,
    http_session: aiohttp.ClientSession,
) -> None:
    github = github_client(http_session, loop_context)
    service = Services.build(replace(loop_context, github=github)).coordination()

    first = await service.run()
    assert first.ok, first.errors
    assert sorted(first.config_changed) == ["acme/api", "acme/ios"]
    stored = await events(loop_context, "REPO_CONFIG_CHANGED", "ISSUE_APPROVED")
    kinds = [(e.type, e.stream_id) for e in stored]
    assert kinds.index(("REPO_CONFIG_CHANGED", "repo:acme/api")) < kinds.index(
        ("ISSUE_APPROVED", "acme/api#1")
    )
    assert {e.stream_id for e in stored if e.type == "REPO_CONFIG_CHANGED"} == {
        "repo:acme/api",
        "repo:acme/ios",
    }
    # Nobody has reported: the python and the macOS issue cannot be taken; docs (no file) can.
    assert sorted(first.unroutable) == ["acme/api#1", "acme/ios#2"]
    assert "🚫 No agent can take: acme/api#1: " in (first.summary_text or "")
    assert webhook.contents()  # the summary was posted

    used = github_fake.windows["core"].used
    contents_before = len(github_fake.contents_requests())
    second = await service.run()
    assert second.ok, second.errors
    rereads = github_fake.contents_requests()[contents_before:]
    assert [r.status for r in rereads] == [304, 304]  # docs has no file: not re-read this hour
    assert github_fake.windows["core"].used == used  # the searches are "search", not "core"

    github_fake.set_file("acme/api", CONFIG_PATH, "stack: [python\n")
    third = await service.run()
    assert third.config_invalid == ["acme/api"]
    record = (await events(loop_context, "COORDINATION_RUN_COMPLETED"))[-1].data
    assert record["configInvalid"] == ["acme/api"]
    assert "🛠️ Broken .rig-agent.yaml: acme/api: not valid YAML at line 2" in (
        third.summary_text or ""
    )
