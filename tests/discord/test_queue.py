"""/queue show and /queue why, on the wire."""

from __future__ import annotations

from tests.discord.conftest import OTHER_GUILD, OTHER_USER, USER, Harness
from tests.discord.helpers import assert_error, break_database, denials, text_of
from tests.fakes.discord import buttons as buttons_of
from tests.fakes.discord import ephemeral


async def test_show_lists_the_queue_in_priority_order(harness: Harness) -> None:
    await harness.approve("acme/api", 1, title="Old normal")
    await harness.approve("acme/api", 2, title="Critical bug", priority="critical")
    await harness.approve("acme/web", 3, title="High thing", priority="high")

    reply = await harness.reply("queue show")

    assert ephemeral(reply)
    description = reply["embeds"][0]["description"]
    lines = description.splitlines()
    assert [line.split("`")[1] for line in lines] == ["acme/api#2", "acme/web#3", "acme/api#1"]
    assert (
        "critical" in lines[0]
        and "[Critical bug](https://github.com/acme/api/issues/2)" in lines[0]
    )
    assert "Page 1 of 1 · 3 queued" in reply["embeds"][0]["footer"]["text"]
    assert reply["components"] == []  # one page: no buttons


async def test_show_filters_by_repo_and_can_be_shared(harness: Harness) -> None:
    await harness.approve("acme/api", 1)
    await harness.approve("acme/web", 2)

    reply = await harness.reply("queue show", {"repo": "acme/web", "share": True})

    assert not ephemeral(reply)
    assert "acme/web#2" in reply["embeds"][0]["description"]
    assert "acme/api" not in reply["embeds"][0]["description"]


async def test_show_attempt_is_shown_for_requeued_issues(harness: Harness) -> None:
    await harness.approve("acme/api", 7)
    await harness.append("ISSUE_ASSIGNED", repo="acme/api", issueNumber=7, agentId="dev-e-1")
    await harness.append("ISSUE_REQUEUED", repo="acme/api", issueNumber=7, reason="agent died")

    reply = await harness.reply("queue show")

    assert "attempt 2" in reply["embeds"][0]["description"]


async def test_show_empty_queue(harness: Harness) -> None:
    reply = await harness.reply("queue show")
    assert "The queue is empty" in reply["embeds"][0]["description"]
    assert ephemeral(reply)


async def test_show_bad_repo(harness: Harness) -> None:
    reply = await harness.reply("queue show", {"repo": "not a repo"})
    assert_error(reply, "is not a repository")


async def test_show_database_down(harness: Harness) -> None:
    await break_database(harness)
    reply = await harness.reply("queue show", {"share": True})
    assert_error(reply, "PostgreSQL is unavailable")


async def test_show_from_another_server_is_denied_and_recorded(harness: Harness) -> None:
    reply = await harness.reply("queue show", guild_id=OTHER_GUILD)
    assert_error(reply, "You may not run /queue show", "only inside the server")
    [denial] = await denials(harness)
    assert denial.data["action"] == "/queue show"
    assert denial.data["actor"] == f"discord:{USER}"


async def test_show_autocompletes_repositories(harness: Harness) -> None:
    await harness.approve("acme/api", 1)
    await harness.approve("other/tool", 2)
    choices = await harness.fake.autocomplete("queue show", {"repo": "acm"}, "repo")
    assert [c["value"] for c in choices] == ["acme/api"]


async def test_300_issues_page_with_buttons_only_for_the_invoker(harness: Harness) -> None:
    await harness.context.pool.execute(
        """
        DO $$
        BEGIN
          FOR i IN 1..300 LOOP
            PERFORM conductor_append(
              'acme/api#' || i, NULL, NULL, ARRAY['ISSUE_APPROVED'],
              ARRAY[jsonb_build_object('repo', 'acme/api', 'issueNumber', i,
                    'title', 'Issue number ' || i, 'priority', 'normal',
                    'url', 'https://github.com/acme/api/issues/' || i)],
              ARRAY['{}'::jsonb]);
          END LOOP;
        END $$;
        """
    )
    # One transaction: equal approval times, so the queue orders these by stream id.
    order = [i.stream_id for i in await harness.context.projections.queue(limit=300)]
    interaction = await harness.invoke("queue show", user_id=USER)
    first = await interaction.reply()
    embed = first["embeds"][0]
    assert embed["footer"]["text"] == "Page 1 of 30 · 300 queued"
    assert embed["description"].splitlines()[0].startswith("**1.**")
    assert f"`{order[0]}`" in embed["description"].splitlines()[0]
    buttons = buttons_of(first)
    assert buttons["pager:prev"]["disabled"] and buttons["pager:first"]["disabled"]
    assert not buttons["pager:next"]["disabled"]

    press = await harness.press(first, "pager:next", user_id=USER)
    assert (await press.callback())["type"] == 7  # the message itself is updated
    second = harness.fake.messages[first["id"]]
    assert second["embeds"][0]["footer"]["text"] == "Page 2 of 30 · 300 queued"
    lines = second["embeds"][0]["description"].splitlines()
    assert lines[0].startswith("**11.**") and f"`{order[10]}`" in lines[0]
    assert len(lines) == 10

    press = await harness.press(second, "pager:last", user_id=USER)
    await press.callback()
    last = harness.fake.messages[first["id"]]
    assert last["embeds"][0]["footer"]["text"] == "Page 30 of 30 · 300 queued"
    final = last["embeds"][0]["description"].splitlines()[-1]
    assert final.startswith("**300.**") and f"`{order[299]}`" in final
    assert buttons_of(last)["pager:next"]["disabled"]

    # Someone else presses: they are told no, privately, and the page does not move.
    intruder = await harness.press(last, "pager:first", user_id=OTHER_USER)
    refusal = await intruder.reply()
    assert ephemeral(refusal)
    assert "Only" in refusal["content"]
    assert harness.fake.messages[first["id"]]["embeds"][0]["footer"]["text"].startswith("Page 30")

    press = await harness.press(last, "pager:first", user_id=USER)
    await press.callback()
    assert harness.fake.messages[first["id"]]["embeds"][0]["footer"]["text"].startswith("Page 1 ")


async def test_why_top_of_the_queue(harness: Harness) -> None:
    await harness.approve("acme/api", 1, priority="critical")
    reply = await harness.reply("queue why", {"issue": "acme/api#1"})
    assert ephemeral(reply)
    assert "It is at the top" in text_of(reply)


async def test_why_behind_higher_priority(harness: Harness) -> None:
    await harness.approve("acme/api", 1, priority="critical")
    await harness.approve("acme/api", 2, priority="high")
    await harness.approve("acme/api", 3)
    reply = await harness.reply(
        "queue why", {"issue": "https://github.com/acme/api/issues/3", "share": True}
    )
    text = text_of(reply)
    assert not ephemeral(reply)
    assert "number 3 of 3" in text
    assert "1 critical, 1 high" in text


async def test_why_assigned_issue_says_what_it_waits_for(harness: Harness) -> None:
    await harness.approve("acme/api", 1)
    await harness.append("ISSUE_ASSIGNED", repo="acme/api", issueNumber=1, agentId="dev-e-1")
    text = text_of(await harness.reply("queue why", {"issue": "acme/api#1"}))
    assert "not in the queue: it is assigned (dev-e-1)" in text
    assert "waits for the agent to start work" in text


async def test_why_names_the_route_and_the_agent_that_never_reported(harness: Harness) -> None:
    config = {"stack": "ios", "escalate": ["requires-macos"]}
    await harness.append(
        "REPO_CONFIG_CHANGED", repo="acme/app", present=True, config=config, routeKey="ios-macos"
    )
    await harness.append(
        "REPO_CONFIG_INVALID", repo="acme/app", sha="f" * 40, error="field 'stack': Field required"
    )
    await harness.approve("acme/app", 5)
    reply = await harness.reply("queue why", {"issue": "acme/app#5"})
    text = text_of(reply)
    assert "No agent for its route: ibuild-e never reported to Conductor-E." in text
    assert "Its .rig-agent.yaml is broken (field 'stack': Field required)" in text
    fields = {f["name"]: f["value"] for f in reply["embeds"][0]["fields"]}
    assert fields["Route"] == "ios-macos → ibuild-e"


async def test_why_unknown_issue(harness: Harness) -> None:
    reply = await harness.reply("queue why", {"issue": "acme/api#404"})
    assert_error(reply, "acme/api#404 is not known")


async def test_why_bad_reference(harness: Harness) -> None:
    reply = await harness.reply("queue why", {"issue": "the login bug"})
    assert_error(reply, "is not an issue")


async def test_why_database_down(harness: Harness) -> None:
    await break_database(harness)
    assert_error(await harness.reply("queue why", {"issue": "acme/api#1"}), "unavailable")


async def test_why_from_another_server_is_denied(harness: Harness) -> None:
    reply = await harness.reply("queue why", {"issue": "acme/api#1"}, guild_id=OTHER_GUILD)
    assert_error(reply, "You may not run /queue why")
    assert len(await denials(harness)) == 1


async def test_why_autocompletes_known_issues(harness: Harness) -> None:
    await harness.approve("acme/api", 12, title="Login fails")
    await harness.approve("acme/web", 13, title="Dark mode")
    choices = await harness.fake.autocomplete("queue why", {"issue": "login"}, "issue")
    assert [c["value"] for c in choices] == ["acme/api#12"]
