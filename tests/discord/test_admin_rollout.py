"""/rollout restart and /rollout status on the wire: real discord.py against the fake Discord,
real kubernetes-asyncio against FakeKubernetes, real PostgreSQL for the audit trail."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.ui.confirm import CANCEL_ID, CONFIRM_ID
from tests.discord import test_admin_support as support
from tests.discord.conftest import ADMIN_ROLE, ADMIN_USER, USER, StartBot
from tests.discord.helpers import assert_error, denials
from tests.discord.test_admin_support import Admin, admin_env, assert_trail, description, title
from tests.fakes.discord import buttons, ephemeral
from tests.fakes.kubernetes import FakeKubernetes, never_ready

# The shared fixtures (tests/discord/conftest.py is the harness's; these are the admin tests').
admin = support.admin
kube = support.kube

REQUESTED, CONFIRMED, DENIED, CANCELLED, COMPLETED, FAILED = (
    "ADMIN_ACTION_REQUESTED",
    "ADMIN_ACTION_CONFIRMED",
    "ADMIN_ACTION_DENIED",
    "ADMIN_ACTION_CANCELLED",
    "ADMIN_ACTION_COMPLETED",
    "ADMIN_ACTION_FAILED",
)


# --- /rollout restart ----------------------------------------------------------------------------


async def test_restart_confirmed_restarts_follows_and_records(admin: Admin) -> None:
    admin.kube.add_deployment("conductor-e-bot", replicas=2)
    interaction, question = await admin.ask("rollout restart", {"target": "conductor-e-bot"})
    assert title(question) == "Restart deployment conductor-e-bot?"
    assert buttons(question)[CONFIRM_ID]["label"] == "Restart"
    # Nothing reaches the cluster before the confirmation.
    assert admin.kube.requests == []

    update = await admin.press(question, CONFIRM_ID)
    assert update["type"] == 7  # the question itself turns into the progress message
    final = await admin.outcome(interaction)

    assert title(final) == "✅ Restarted deployment conductor-e-bot"
    assert "Successfully rolled out in" in description(final)
    fields = {f["name"]: f["value"] for f in final["embeds"][0]["fields"]}
    assert fields["Replicas"].startswith("2/2 updated")
    assert fields["Took"].endswith(" s")
    assert all(b["disabled"] for b in buttons(final).values())
    assert len(admin.kube.restart_patches) == 1
    assert admin.kube.restart_patches[0][0] == "conductor-e-bot"
    assert admin.kube.deployment("conductor-e-bot")["metadata"]["generation"] == 2

    events = await admin.trail(3)
    assert_trail(
        events,
        [REQUESTED, CONFIRMED, COMPLETED],
        action="/rollout restart",
        target="conductor-e-bot",
    )
    assert "successfully rolled out" in events[-1].data["result"]
    cid = events[0].data["correlationId"]
    assert cid in final["embeds"][0]["footer"]["text"]
    post = await admin.audit_post("completed")
    assert f"<@{ADMIN_USER}>" in post and "`conductor-e-bot`" in post and cid in post


async def test_restart_cancelled_sends_nothing_to_the_cluster(admin: Admin) -> None:
    admin.kube.add_deployment("conductor-e-bot")
    _, question = await admin.ask("rollout restart", {"target": "conductor-e-bot"})
    await admin.press(question, CANCEL_ID)

    message = admin.fake.messages[question["id"]]
    assert "Cancelled: nothing was done." in description(message)
    assert all(b["disabled"] for b in buttons(message).values())
    events = await admin.trail(2)
    assert_trail(
        events, [REQUESTED, CANCELLED], action="/rollout restart", target="conductor-e-bot"
    )
    assert events[-1].data["result"] == "cancelled by the invoker"
    assert "cancelled" in await admin.audit_post("cancelled")
    assert admin.kube.requests == []


async def test_restart_not_confirmed_in_time_times_out(admin: Admin) -> None:
    admin.cog.confirm_timeout = 0.3
    admin.kube.add_deployment("conductor-e-bot")
    _, question = await admin.ask("rollout restart", {"target": "conductor-e-bot"})
    fields = {f["name"]: f["value"] for f in question["embeds"][0]["fields"]}
    assert fields["Confirm within"] == "0.3 s"

    def timed_out() -> bool:
        return "Not confirmed within 0.3 s" in description(admin.fake.messages[question["id"]])

    await admin.fake.wait_for(timed_out, 5)
    message = admin.fake.messages[question["id"]]
    assert all(b["disabled"] for b in buttons(message).values())
    events = await admin.trail(2)
    assert_trail(
        events, [REQUESTED, CANCELLED], action="/rollout restart", target="conductor-e-bot"
    )
    assert events[-1].data["result"] == "timed out: not confirmed within 0.3s"
    assert admin.kube.requests == []


async def test_restart_denied_to_a_non_admin_never_reaches_the_cluster(admin: Admin) -> None:
    admin.kube.add_deployment("conductor-e-bot")
    reply = await admin.harness.reply(
        "rollout restart", {"target": "conductor-e-bot"}, user_id=USER
    )
    assert_error(reply, "You may not run /rollout restart", "not allowed to run rollout")
    assert admin.kube.requests == []
    recorded = await denials(admin.harness)
    assert len(recorded) == 1
    assert recorded[0].data["actor"] == f"discord:{USER}"
    assert recorded[0].data["action"] == "/rollout restart"
    post = await admin.audit_post("denied")
    assert f"<@{USER}>" in post and "/rollout restart" in post


async def test_restart_allowed_by_the_admin_role(admin: Admin) -> None:
    admin.kube.add_deployment("conductor-e-bot")
    interaction = await admin.harness.invoke(
        "rollout restart", {"target": "conductor-e-bot"}, user_id=USER, role_ids=[ADMIN_ROLE]
    )
    question = await interaction.reply()
    assert title(question) == "Restart deployment conductor-e-bot?"
    await admin.press(question, CANCEL_ID, user_id=USER)
    assert admin.kube.requests == []


async def test_restart_of_a_target_not_in_the_allowlist_is_refused(admin: Admin) -> None:
    admin.kube.add_deployment("coredns")
    reply = await admin.harness.reply("rollout restart", {"target": "coredns"}, user_id=ADMIN_USER)
    assert_error(
        reply,
        "deployment 'coredns' is not an allowed rollout target",
        "allowed: conductor-e-bot, conductor-e-api, stuck, absent",
    )
    assert admin.kube.requests == []
    events = await admin.trail(2)
    assert_trail(events, [REQUESTED, DENIED], action="/rollout restart", target="coredns")
    assert "not an allowed rollout target" in events[-1].data["result"]
    assert "denied" in await admin.audit_post("coredns")


async def test_restart_forbidden_by_rbac_names_the_verb_and_resource(admin: Admin) -> None:
    admin.kube.add_deployment("conductor-e-bot")
    admin.kube.forbid("patch", "deployments")
    interaction, question = await admin.ask("rollout restart", {"target": "conductor-e-bot"})
    await admin.press(question, CONFIRM_ID)
    final = await admin.outcome(interaction)
    assert title(final) == "❌ Restart of conductor-e-bot failed"
    reason = "forbidden: cannot patch deployments.apps in namespace conductor-e"
    assert reason in description(final)
    events = await admin.trail(3)
    assert_trail(
        events, [REQUESTED, CONFIRMED, FAILED], action="/rollout restart", target="conductor-e-bot"
    )
    assert events[-1].data["result"] == reason
    assert reason in await admin.audit_post("failed")


async def test_restart_of_a_deployment_that_does_not_exist(admin: Admin) -> None:
    interaction, question = await admin.ask("rollout restart", {"target": "absent"})
    await admin.press(question, CONFIRM_ID)
    final = await admin.outcome(interaction)
    assert title(final) == "❌ Restart of absent failed"
    assert "deployment absent not found in namespace conductor-e" in description(final)
    assert admin.kube.requests_to("PATCH") == []
    events = await admin.trail(3)
    assert [e.type for e in events] == [REQUESTED, CONFIRMED, FAILED]


async def test_rollout_that_never_becomes_ready_times_out_with_the_reason(admin: Admin) -> None:
    admin.cog.rollout_timeout = 0.5
    deployment = admin.kube.add_deployment("stuck", program=never_ready())
    labels = deployment.obj["spec"]["selector"]["matchLabels"]
    admin.kube.add_pod("stuck-new-1", labels, ready=False, waiting_reason="CrashLoopBackOff")
    interaction, question = await admin.ask("rollout restart", {"target": "stuck"})
    await admin.press(question, CONFIRM_ID)
    final = await admin.outcome(interaction)

    assert title(final) == "❌ Restart of stuck timed out"
    text = description(final)
    assert "rollout of stuck timed out after 0.5s" in text
    assert "1 out of 2 new replicas have been updated" in text
    assert "pod stuck-new-1: main: CrashLoopBackOff" in text
    events = await admin.trail(3)
    assert_trail(events, [REQUESTED, CONFIRMED, FAILED], action="/rollout restart", target="stuck")
    assert "CrashLoopBackOff" in events[-1].data["result"]


async def test_one_change_at_a_time_per_deployment(admin: Admin) -> None:
    admin.kube.add_deployment("conductor-e-bot")
    _, question = await admin.ask("rollout restart", {"target": "conductor-e-bot"})
    reply = await admin.harness.reply(
        "rollout restart", {"target": "conductor-e-bot"}, user_id=ADMIN_USER
    )
    assert_error(reply, "deployment/conductor-e-bot is already being changed")
    await admin.press(question, CANCEL_ID)
    events = await admin.trail(4)
    assert sorted(e.type for e in events) == sorted([REQUESTED, REQUESTED, DENIED, CANCELLED])
    assert admin.kube.requests == []


async def test_restart_autocomplete_offers_the_allowlist_without_asking_kubernetes(
    admin: Admin,
) -> None:
    choices = await admin.fake.autocomplete(
        "rollout restart", {"target": "conductor"}, "target", user_id=ADMIN_USER
    )
    assert [c["value"] for c in choices] == ["conductor-e-bot", "conductor-e-api"]
    assert admin.kube.requests == []


# --- /rollout status -----------------------------------------------------------------------------


async def test_status_shows_replicas_and_records_the_read(admin: Admin) -> None:
    admin.kube.add_deployment("conductor-e-api", replicas=3)
    reply = await admin.harness.reply(
        "rollout status", {"target": "conductor-e-api"}, user_id=ADMIN_USER
    )
    assert ephemeral(reply)
    assert title(reply) == "🟢 deployment conductor-e-api"
    assert description(reply) == "successfully rolled out"
    fields = {f["name"]: f["value"] for f in reply["embeds"][0]["fields"]}
    assert fields["Replicas"] == "3/3 updated · 3 ready · 3 available"
    assert len(admin.kube.requests) == 1 and admin.kube.requests[0].method == "GET"
    events = await admin.trail(2)
    assert_trail(events, [REQUESTED, COMPLETED], action="/rollout status", target="conductor-e-api")


async def test_status_not_found(admin: Admin) -> None:
    reply = await admin.harness.reply("rollout status", {"target": "absent"}, user_id=ADMIN_USER)
    assert_error(reply, "deployment absent not found in namespace conductor-e")
    events = await admin.trail(2)
    assert [e.type for e in events] == [REQUESTED, FAILED]


async def test_status_forbidden(admin: Admin) -> None:
    admin.kube.add_deployment("conductor-e-api")
    admin.kube.forbid("get", "deployments")
    reply = await admin.harness.reply(
        "rollout status", {"target": "conductor-e-api"}, user_id=ADMIN_USER
    )
    assert_error(reply, "forbidden: cannot get deployments.apps in namespace conductor-e")


async def test_status_not_in_allowlist_and_denied(admin: Admin) -> None:
    reply = await admin.harness.reply("rollout status", {"target": "etcd"}, user_id=ADMIN_USER)
    assert_error(reply, "deployment 'etcd' is not an allowed rollout target")
    reply = await admin.harness.reply("rollout status", {"target": "conductor-e-api"}, user_id=USER)
    assert_error(reply, "You may not run /rollout status")
    assert admin.kube.requests == []


async def test_cluster_unreachable(admin: Admin) -> None:
    admin.kube.add_deployment("conductor-e-api")
    await admin.kube.stop()
    reply = await admin.harness.reply(
        "rollout status", {"target": "conductor-e-api"}, user_id=ADMIN_USER
    )
    assert_error(reply, "cannot reach the Kubernetes API at http://127.0.0.1:")


async def test_without_a_cluster_the_cog_loads_and_says_so(
    start_bot: StartBot, kube: FakeKubernetes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No kubeconfig anywhere and not in a pod: neither the setting nor the defaults.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    env = admin_env(kube, tmp_path / "unused")
    del env["CONDUCTOR_KUBECONFIG"]
    harness = await start_bot(env)
    assert harness.bot.get_cog("AdminCog") is not None
    reply = await harness.reply("rollout status", {"target": "conductor-e-api"}, user_id=ADMIN_USER)
    assert_error(reply, "Kubernetes is not configured")
    interaction = await harness.invoke(
        "rollout restart", {"target": "conductor-e-bot"}, user_id=ADMIN_USER
    )
    assert_error(await interaction.reply(), "Kubernetes is not configured")
    assert kube.requests == []
