"""/pods, /logs and /audit recent on the wire: real discord.py against the fake Discord, real
kubernetes-asyncio against FakeKubernetes, real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.ui.confirm import CANCEL_ID
from tests.discord import test_admin_support as support
from tests.discord.conftest import ADMIN_USER, USER
from tests.discord.helpers import assert_error
from tests.discord.test_admin_support import GITHUB_SECRET, Admin, assert_trail, description, title
from tests.fakes.discord import ephemeral

admin = support.admin
kube = support.kube

BOT = {"app.kubernetes.io/name": "conductor-e", "app.kubernetes.io/component": "bot"}
API = {"app.kubernetes.io/name": "conductor-e", "app.kubernetes.io/component": "api"}
SHAPED = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # a GitHub token nobody configured
ANTHROPIC = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"


def leaky_lines(count: int) -> list[tuple[datetime, str]]:
    now = datetime.now(UTC)
    lines = []
    for i in range(count):
        at = now - timedelta(seconds=count - i)
        secret = [GITHUB_SECRET, SHAPED, ANTHROPIC, "password=hunter2hunter2"][i % 4]
        lines.append((at, f"line {i:04d} calling GitHub with {secret} and nothing else"))
    return lines


# --- /pods ---------------------------------------------------------------------------------------


async def test_pods_lists_every_component_or_one(admin: Admin) -> None:
    admin.kube.add_pod("conductor-e-bot-7d9f-abcde", BOT, restarts=2)
    admin.kube.add_pod(
        "conductor-e-api-6c8d-fghij", API, ready=False, waiting_reason="CrashLoopBackOff"
    )
    admin.kube.add_pod("coredns-1", {"k8s-app": "kube-dns"})
    reply = await admin.harness.reply("pods", user_id=ADMIN_USER)
    assert ephemeral(reply)
    text = description(reply)
    assert "**conductor-e-bot-7d9f-abcde** · Running · 1/1 ready · 2 restarts" in text
    assert "conductor-e-api-6c8d-fghij" in text and "CrashLoopBackOff" in text
    assert "coredns" not in text
    footer = reply["embeds"][0]["footer"]["text"]
    assert footer.endswith("2 pods, 1 not ready")
    selector = admin.kube.requests[0].query["labelSelector"]
    assert selector == "app.kubernetes.io/name=conductor-e"

    reply = await admin.harness.reply("pods", {"component": "bot"}, user_id=ADMIN_USER)
    assert title(reply) == "Pods of bot"
    assert "conductor-e-api" not in description(reply)
    events = await admin.trail(4)
    assert_trail(
        events[2:],
        ["ADMIN_ACTION_REQUESTED", "ADMIN_ACTION_COMPLETED"],
        action="/pods",
        target="bot",
    )


async def test_pods_refused_for_an_unknown_component_and_a_non_admin(admin: Admin) -> None:
    reply = await admin.harness.reply("pods", {"component": "kube-proxy"}, user_id=ADMIN_USER)
    assert_error(reply, "unknown component 'kube-proxy'", "known: api, bot, coordinate, postgresql")
    reply = await admin.harness.reply("pods", user_id=USER)
    assert_error(reply, "You may not run /pods")
    assert admin.kube.requests == []


async def test_pods_forbidden_by_rbac(admin: Admin) -> None:
    admin.kube.forbid("list", "pods")
    reply = await admin.harness.reply("pods", {"component": "api"}, user_id=ADMIN_USER)
    assert_error(reply, "forbidden: cannot list pods in namespace conductor-e")
    events = await admin.trail(2)
    assert [e.type for e in events] == ["ADMIN_ACTION_REQUESTED", "ADMIN_ACTION_FAILED"]


async def test_component_autocomplete_reads_the_configuration(admin: Admin) -> None:
    choices = await admin.fake.autocomplete(
        "logs", {"component": "o"}, "component", user_id=ADMIN_USER
    )
    assert [c["value"] for c in choices] == ["bot", "coordinate", "postgresql"]
    assert admin.kube.requests == []


# --- /logs ---------------------------------------------------------------------------------------


async def test_short_logs_inline_and_redacted(admin: Admin) -> None:
    admin.kube.add_pod("conductor-e-bot-1", BOT, logs=leaky_lines(4))
    reply = await admin.harness.reply("logs", {"component": "bot"}, user_id=ADMIN_USER)
    content = reply["content"]
    assert ephemeral(reply)
    assert content.startswith("Logs of **bot**: 1 pod(s), 4 line(s)")
    assert "==> conductor-e-bot-1/main <==" in content
    for secret in (GITHUB_SECRET, SHAPED, ANTHROPIC, "hunter2"):
        assert secret not in content
    assert content.count("[REDACTED]") == 4
    assert reply["attachments"] == []


async def test_long_logs_go_as_a_redacted_file(admin: Admin) -> None:
    admin.kube.add_pod("conductor-e-bot-1", BOT, logs=leaky_lines(400))
    admin.kube.add_pod("conductor-e-bot-2", BOT, logs=leaky_lines(10))
    reply = await admin.harness.reply(
        "logs", {"component": "bot", "lines": 300}, user_id=ADMIN_USER
    )
    assert reply["content"].startswith("Logs of **bot**: 2 pod(s), 310 line(s) (up to 300 per pod")
    [attachment] = reply["attachments"]
    assert attachment["filename"] == "logs-bot.txt"
    text = attachment["content"]
    assert "==> conductor-e-bot-1/main <==" in text and "==> conductor-e-bot-2/main <==" in text
    assert "line 0100 " in text and "line 0099 " not in text  # the last 300 of 400
    for secret in (GITHUB_SECRET, SHAPED, ANTHROPIC, "hunter2"):
        assert secret not in text
    assert text.count("[REDACTED]") == 310
    tails = [r.query.get("tailLines") for r in admin.kube.requests_to("GET", "/log")]
    assert tails == ["300", "300"]
    events = await admin.trail(2)
    assert events[-1].data["result"] == "310 lines from 2 pods"


async def test_logs_since(admin: Admin) -> None:
    now = datetime.now(UTC)
    admin.kube.add_pod(
        "conductor-e-api-1",
        API,
        logs=[(now - timedelta(hours=2), "old line"), (now - timedelta(minutes=1), "new line")],
    )
    reply = await admin.harness.reply(
        "logs", {"component": "api", "since": "30m"}, user_id=ADMIN_USER
    )
    assert "new line" in reply["content"] and "old line" not in reply["content"]
    assert admin.kube.requests_to("GET", "/log")[0].query["sinceSeconds"] == "1800"


async def test_logs_refusals_send_nothing_to_the_cluster(admin: Admin) -> None:
    reply = await admin.harness.reply(
        "logs", {"component": "api", "since": "yesterday"}, user_id=ADMIN_USER
    )
    assert_error(reply, "since: expected a duration like 30s, 15m, 2h or 1h30m")
    reply = await admin.harness.reply("logs", {"component": "etcd"}, user_id=ADMIN_USER)
    assert_error(reply, "unknown component 'etcd'")
    reply = await admin.harness.reply("logs", {"component": "api"}, user_id=USER)
    assert_error(reply, "You may not run /logs")
    assert admin.kube.requests == []
    events = await admin.trail(5)
    assert [e.type for e in events] == ["ADMIN_ACTION_REQUESTED", "ADMIN_ACTION_DENIED"] * 2 + [
        "ADMIN_ACTION_DENIED"  # the permission layer's: no request record, no correlation id
    ]
    assert events[-1].data["result"] == "you are not allowed to run cluster commands"


async def test_logs_forbidden_by_rbac(admin: Admin) -> None:
    admin.kube.add_pod("conductor-e-api-1", API, logs=leaky_lines(3))
    admin.kube.forbid("get", "pods/log")
    reply = await admin.harness.reply("logs", {"component": "api"}, user_id=ADMIN_USER)
    assert_error(reply, "forbidden: cannot get pods/log in namespace conductor-e")


# --- /audit recent -------------------------------------------------------------------------------


async def test_audit_recent_lists_actions_and_denials(admin: Admin) -> None:
    empty = await admin.harness.reply("audit recent", user_id=ADMIN_USER)
    assert "No admin action recorded yet." in description(empty)

    admin.kube.add_deployment("conductor-e-bot")
    _, question = await admin.ask("rollout restart", {"target": "conductor-e-bot"})
    await admin.press(question, CANCEL_ID)
    await admin.trail(2)
    await admin.harness.reply("pods", user_id=USER)  # denied by the permission layer

    reply = await admin.harness.reply("audit recent", {"limit": 10}, user_id=ADMIN_USER)
    lines = description(reply).splitlines()
    assert len(lines) == 3
    assert "**denied**" in lines[0] and f"<@{USER}>" in lines[0] and "`/pods`" in lines[0]
    assert "**cancelled**" in lines[1] and "`conductor-e-bot`" in lines[1]
    assert "**requested**" in lines[2] and f"<@{ADMIN_USER}>" in lines[2]
    cid = (await admin.records())[0].data["correlationId"]
    assert cid in lines[1] and cid in lines[2]

    reply = await admin.harness.reply("audit recent", user_id=USER)
    assert_error(reply, "You may not run /audit recent")
