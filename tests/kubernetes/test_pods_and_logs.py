"""Pods of a component and their logs, tailed, windowed and redacted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import InvalidInput
from bot.integrations.kubernetes import KubernetesClient, KubernetesForbidden
from bot.services.cluster.redaction import Redactor
from bot.services.cluster.rollouts import NotAllowed, RolloutConfig, RolloutService
from tests.fakes.kubernetes import FakeKubernetes
from tests.kubernetes.conftest import FAST, NAMESPACE, SECRET

BOT = {"app.kubernetes.io/name": "conductor-e", "app.kubernetes.io/component": "bot"}
API = {"app.kubernetes.io/name": "conductor-e", "app.kubernetes.io/component": "api"}
BOT_SELECTOR = "app.kubernetes.io/name=conductor-e,app.kubernetes.io/component=bot"


def lines(*texts: str, minutes_ago: float = 1) -> list[tuple[datetime, str]]:
    at = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return [(at, text) for text in texts]


async def test_pods_of_a_component(fake: FakeKubernetes, service: RolloutService) -> None:
    fake.add_pod("conductor-e-bot-1", BOT, restarts=3, age=timedelta(hours=2))
    fake.add_pod(
        "conductor-e-bot-2", BOT, ready=False, phase="Running", waiting_reason="CrashLoopBackOff"
    )
    fake.add_pod("conductor-e-api-1", API)

    pods = await service.pods("bot")

    assert fake.requests[-1].query["labelSelector"] == BOT_SELECTOR
    assert [p.name for p in pods] == ["conductor-e-bot-1", "conductor-e-bot-2"]
    first, second = pods
    assert (first.phase, first.ready, first.restarts, first.ready_containers) == (
        "Running",
        True,
        3,
        1,
    )
    assert first.age is not None
    assert timedelta(hours=2) <= first.age < timedelta(hours=2, minutes=1)
    assert (second.ready, second.problem) == (False, "main: CrashLoopBackOff")

    everything = await service.pods()
    assert fake.requests[-1].query["labelSelector"] == "app.kubernetes.io/name=conductor-e"
    assert len(everything) == 3


async def test_logs_tail_and_window_with_secrets_redacted(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    structured = json.dumps({"level": "info", "msg": "gateway connected", "shard": 0})
    fake.add_pod(
        "conductor-e-bot-1",
        BOT,
        logs=lines("started an hour ago", minutes_ago=60)
        + lines(
            f"connecting to postgresql://conductor:{SECRET}@db:5432/conductor",
            "github token ghp_abcdefghijklmnopqrstuvwxyz0123456789 loaded",
            "anthropic key sk-ant-api03-AbCdEfGhIjKlMnOp_qrstuv-wxyz rotated",
            "discord MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789 ok",
            "Authorization: Bearer abcdef0123456789abcdef",
            "login password=hunter22 user=dev",
            structured,
        ),
    )

    chunks = await service.logs("bot", lines=7, since=600)

    request = fake.requests_to("GET", "/log")[0]
    assert request.path == f"/api/v1/namespaces/{NAMESPACE}/pods/conductor-e-bot-1/log"
    assert request.query == {"container": "main", "tailLines": "7", "sinceSeconds": "600"}
    (chunk,) = chunks
    assert chunk.pod == "conductor-e-bot-1"
    assert chunk.lines == [
        "connecting to postgresql://conductor:[REDACTED]@db:5432/conductor",
        "github token [REDACTED] loaded",
        "anthropic key [REDACTED] rotated",
        "discord [REDACTED] ok",
        "Authorization: Bearer [REDACTED]",
        "login password=[REDACTED] user=dev",
        # One JSON line stays the text it was (the client would otherwise parse it).
        structured,
    ]
    text = "\n".join(chunk.lines)
    assert SECRET not in text and "hunter22" not in text and "ghp_" not in text

    # A log that is exactly one JSON document comes back as that text, not a parsed dict.
    one = await service.logs("bot", lines=1)
    assert one[0].lines == [structured]
    tail = await service.logs("bot", lines=2)
    assert tail[0].lines == ["login password=[REDACTED] user=dev", structured]
    everything = await service.logs("bot", lines=100)
    assert everything[0].lines[0] == "started an hour ago"


async def test_logs_read_the_default_container_of_each_pod(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    pod = fake.add_pod(
        "conductor-e-bot-1",
        BOT,
        containers=("sidecar", "bot"),
        logs={"bot": lines("bot line"), "sidecar": lines("sidecar line")},
    )
    pod.obj["metadata"]["annotations"] = {"kubectl.kubernetes.io/default-container": "bot"}
    fake.add_pod("conductor-e-bot-2", BOT, logs=lines("second pod"))

    chunks = await service.logs("bot", lines=10)

    assert [(c.pod, c.container, c.lines) for c in chunks] == [
        ("conductor-e-bot-1", "bot", ["bot line"]),
        ("conductor-e-bot-2", "main", ["second pod"]),
    ]


async def test_logs_forbidden_names_the_subresource(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_pod("conductor-e-bot-1", BOT, logs=lines("x"))
    fake.forbid("get", "pods/log")

    with pytest.raises(KubernetesForbidden) as caught:
        await service.logs("bot")

    assert caught.value.message == "forbidden: cannot get pods/log in namespace conductor-e"


async def test_unknown_component_and_bad_arguments_are_refused_before_any_request(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    with pytest.raises(NotAllowed):
        await service.logs("bot,app.kubernetes.io/name!=conductor-e")
    with pytest.raises(NotAllowed):
        await service.pods("database")
    with pytest.raises(InvalidInput, match="lines must be between"):
        await service.logs("bot", lines=0)
    with pytest.raises(InvalidInput, match="since must be"):
        await service.logs("bot", since=-5)
    assert fake.requests == []


async def test_selector_is_configurable_per_component(
    fake: FakeKubernetes, kube: KubernetesClient
) -> None:
    config = RolloutConfig(namespace=NAMESPACE, component_selectors={"legacy": "app=legacy-bot"})
    service = RolloutService(kube, config, redactor=Redactor(), poll=FAST)
    fake.add_pod("legacy-bot-1", {"app": "legacy-bot"})
    fake.add_pod("conductor-e-bot-1", BOT)

    pods = await service.pods("legacy")

    assert fake.requests[-1].query["labelSelector"] == "app=legacy-bot"
    assert [p.name for p in pods] == ["legacy-bot-1"]
