"""Steering from Discord on the wire: /issue approve|priority|hold|unhold|requeue|assign and
/agent pause|resume, by the real bot against the fake Discord and the fake GitHub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.services.intake.events import Actor
from bot.ui.confirm import CANCEL_ID, CONFIRM_ID
from bot.wiring import Services
from tests.discord.conftest import ADMIN_CHANNEL, ADMIN_USER, DEV_ROLE, USER, Harness, StartBot
from tests.discord.helpers import assert_error, denials, text_of
from tests.fakes.discord import buttons
from tests.fakes.github import FakeGitHub

READY = "agent-ready"
WAIT = 10.0


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as fake:
        yield fake


@pytest.fixture
async def steer(start_bot: StartBot, github: FakeGitHub) -> Harness:
    assert github.token is not None
    return await start_bot(
        {
            "GITHUB_TOKEN": github.token,
            "CONDUCTOR_GITHUB_API_URL": github.url,
            "CONDUCTOR_MANAGED_REPOS": "acme/api",
            "CONDUCTOR_STEER_ROLE_IDS": str(DEV_ROLE),
            "CONDUCTOR_AUDIT_CHANNEL_ID": str(ADMIN_CHANNEL),
        }
    )


async def queued(harness: Harness, github: FakeGitHub, number: int) -> None:
    github.add_issue("acme/api", number, labels=[READY])
    await harness.approve("acme/api", number)


STEERER = {"role_ids": [DEV_ROLE]}


async def claim(harness: Harness, agent: str) -> str | None:
    issue = await Services.build(harness.context).events.claim(
        "issue", agent, Actor(name=None, authenticated=False)
    )
    return None if issue is None else issue.stream_id


def labels(github: FakeGitHub, number: int) -> list[str]:
    return [label["name"] for label in github.issue("acme/api", number)["labels"]]


async def test_hold_and_unhold(steer: Harness, github: FakeGitHub) -> None:
    await queued(steer, github, 1)
    reply = await steer.reply("issue hold", {"issue": "acme/api#1", "reason": "design"}, **STEERER)
    assert "acme/api#1 is held: design" in text_of(reply)
    assert "hold" in labels(github, 1)
    assert await claim(steer, "dev-e-1") is None
    issue = await steer.context.projections.issue("acme/api#1")
    assert issue is not None and issue.held_by == f"discord:{USER}"
    shown = await (await steer.invoke("issue show", {"issue": "acme/api#1"})).reply(WAIT)
    assert "ISSUE_HELD" in text_of(shown)
    assert f"held by <@{USER}>: design" in text_of(shown)
    queue = await steer.reply("queue show", {})
    assert f"held by <@{USER}>: design" in text_of(queue)
    # The audit channel hears who did it.
    await steer.fake.wait_for(
        lambda: any(
            "issue hold" in m["content"] for m in steer.fake.channel_messages(ADMIN_CHANNEL)
        ),
        WAIT,
    )

    reply = await steer.reply("issue unhold", {"issue": "acme/api#1"}, **STEERER)
    assert "no longer held" in text_of(reply)
    assert "hold" not in labels(github, 1)


async def test_priority_and_approve(steer: Harness, github: FakeGitHub) -> None:
    await queued(steer, github, 1)
    reply = await steer.reply(
        "issue priority", {"issue": "acme/api#1", "priority": "high"}, **STEERER
    )
    assert "priority normal → high" in text_of(reply)
    assert "priority:high" in labels(github, 1)

    github.add_issue("acme/api", 2, labels=[])
    reply = await steer.reply("issue approve", {"issue": "acme/api#2"}, **STEERER)
    assert "acme/api#2 is approved (normal) and queued" in text_of(reply)
    assert labels(github, 2) == [READY]


async def test_github_500_is_said_and_nothing_recorded(steer: Harness, github: FakeGitHub) -> None:
    await queued(steer, github, 1)
    github.fail(422, times=1, path="/repos/acme/api/issues/1/labels", message="Validation Failed")
    reply = await steer.reply("issue hold", {"issue": "acme/api#1"}, **STEERER)
    assert_error(reply, "GitHub failed to add the label", "Nothing was changed")
    issue = await steer.context.projections.issue("acme/api#1")
    assert issue is not None and not issue.held


async def test_requeue_and_assign_ask_first(steer: Harness, github: FakeGitHub) -> None:
    await queued(steer, github, 1)
    assert await claim(steer, "dev-e-1") == "acme/api#1"

    interaction = await steer.invoke(
        "issue requeue", {"issue": "acme/api#1", "reason": "stuck"}, role_ids=[DEV_ROLE]
    )
    question = await interaction.reply(WAIT)
    assert set(buttons(question)) == {CONFIRM_ID, CANCEL_ID}
    assert "from dev-e-1" in text_of(question)
    press = await steer.press(question, CONFIRM_ID, user_id=USER)
    await press.callback(WAIT)
    await steer.fake.wait_for(
        lambda: "taken back from dev-e-1" in text_of(interaction.original or {}), WAIT
    )
    issue = await steer.context.projections.issue("acme/api#1")
    assert issue is not None and issue.state == "queued"

    interaction = await steer.invoke(
        "issue assign", {"issue": "acme/api#1", "agent": "dev-e-2"}, role_ids=[DEV_ROLE]
    )
    question = await interaction.reply(WAIT)
    press = await steer.press(question, CONFIRM_ID, user_id=USER)
    await press.callback(WAIT)
    await steer.fake.wait_for(
        lambda: "assigned to dev-e-2" in text_of(interaction.original or {}), WAIT
    )
    issue = await steer.context.projections.issue("acme/api#1")
    assert issue is not None and issue.assignee == "dev-e-2"


async def test_pause_resume_and_agent_autocomplete(steer: Harness, github: FakeGitHub) -> None:
    await queued(steer, github, 1)
    await steer.append("HEARTBEAT", agentId="dev-e-1", status="idle")
    choices = await steer.fake.autocomplete(
        "agent pause", {"agent": "dev"}, "agent", role_ids=[DEV_ROLE]
    )
    assert [c["value"] for c in choices] == ["dev-e-1"]

    reply = await steer.reply("agent pause", {"agent": "dev-e-1", "reason": "tokens"}, **STEERER)
    assert "dev-e-1 is paused" in text_of(reply)
    agents = await steer.reply("agents", {})
    assert "paused**: tokens" in text_of(agents)
    assert await claim(steer, "dev-e-1") is None
    reply = await steer.reply("agent resume", {"agent": "dev-e-1"}, **STEERER)
    assert "dev-e-1 is resumed" in text_of(reply)
    assert await claim(steer, "dev-e-1") == "acme/api#1"


async def test_an_admin_steers_too(steer: Harness, github: FakeGitHub) -> None:
    interaction = await steer.invoke("agent pause", {"agent": "dev-e-9"}, user_id=ADMIN_USER)
    assert "dev-e-9 is paused" in text_of(await interaction.reply(WAIT))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("issue approve", {"issue": "acme/api#1"}),
        ("issue priority", {"issue": "acme/api#1", "priority": "high"}),
        ("issue hold", {"issue": "acme/api#1"}),
        ("issue unhold", {"issue": "acme/api#1"}),
        ("issue requeue", {"issue": "acme/api#1"}),
        ("issue assign", {"issue": "acme/api#1", "agent": "dev-e-1"}),
        ("agent pause", {"agent": "dev-e-1"}),
        ("agent resume", {"agent": "dev-e-1"}),
    ],
)
async def test_each_command_is_denied_to_others_and_the_denial_recorded(
    steer: Harness, github: FakeGitHub, name: str, options: dict[str, Any]
) -> None:
    await queued(steer, github, 1)
    reply = await (await steer.invoke(name, options)).reply(WAIT)  # no steer role
    assert_error(reply, "not allowed")
    (denial,) = await denials(steer)
    assert denial.data["actor"] == f"discord:{USER}" and denial.data["action"] == f"/{name}"
    assert labels(github, 1) == [READY]
    issue = await steer.context.projections.issue("acme/api#1")
    assert issue is not None and (issue.state, issue.held) == ("queued", False)
