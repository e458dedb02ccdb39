"""Restart a deployment and follow its rollout, through the real kubernetes-asyncio client."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import Forbidden, NotFound, Unavailable, to_user_facing
from bot.integrations.kubernetes import (
    RESTARTED_AT,
    ClusterUnavailable,
    KubernetesClient,
    KubernetesForbidden,
    KubernetesNotFound,
)
from bot.services.cluster.rollouts import (
    DeploymentPaused,
    NotAllowed,
    RolloutConfig,
    RolloutFailed,
    RolloutProgress,
    RolloutService,
    RolloutTimedOut,
)
from tests.fakes.kubernetes import FakeKubernetes, deadline_exceeded, never_ready
from tests.kubernetes.conftest import FAST, NAMESPACE


class Recorder:
    def __init__(self) -> None:
        self.events: list[RolloutProgress] = []

    async def __call__(self, event: RolloutProgress) -> None:
        self.events.append(event)

    @property
    def phases(self) -> list[str]:
        return [e.phase for e in self.events]


async def test_restart_sends_kubectls_patch_and_follows_to_completion(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_deployment("conductor-e-bot", replicas=2)
    progress = Recorder()
    before = datetime.now(UTC).replace(microsecond=0)

    result = await service.restart("conductor-e-bot", progress, timeout=10)

    patches = fake.requests_to("PATCH")
    assert len(patches) == 1
    patch = patches[0]
    assert patch.path == f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/conductor-e-bot"
    assert patch.content_type == "application/strategic-merge-patch+json"
    stamp = patch.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert patch.body == {
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}
    }
    restarted = datetime.fromisoformat(stamp)
    assert before <= restarted <= datetime.now(UTC)
    # The kubeconfig's token went with every request.
    assert {r.authorization for r in fake.requests} == {f"Bearer {fake.token}"}

    assert progress.phases[0] == "requested"
    assert progress.phases[-1] == "complete"
    assert set(progress.phases[1:-1]) == {"progressing"}
    assert [e.message for e in progress.events[1:]] == [
        "1 out of 2 new replicas have been updated",
        "1 old replicas are pending termination",
        "1 of 2 updated replicas are available",
        "successfully rolled out",
    ]
    assert result.deployment.generation == 2
    assert result.deployment.observed_generation == 2
    assert result.restarted_at == stamp
    # GET, PATCH, then one GET per step of the fake's rollout: every request counted.
    assert result.requests == len(fake.requests) == 6
    assert progress.events[-1].requests == result.requests


async def test_rollout_that_never_becomes_ready_times_out_with_the_reason(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    deployment = fake.add_deployment("stuck", replicas=2, program=never_ready(2))
    labels = deployment.obj["spec"]["selector"]["matchLabels"]
    fake.add_pod("stuck-old-1", labels)
    fake.add_pod("stuck-new-1", labels, ready=False, restarts=4, waiting_reason="CrashLoopBackOff")
    progress = Recorder()

    with pytest.raises(RolloutTimedOut) as caught:
        await service.restart("stuck", progress, timeout=0.2)

    message = caught.value.message
    assert message.startswith("rollout of stuck timed out after 0.2s: ")
    assert "1 out of 2 new replicas have been updated" in message
    assert "pod stuck-new-1: main: CrashLoopBackOff" in message
    assert "stuck-old-1" not in message
    assert progress.phases[-1] == "timed_out"
    assert caught.value.status == 504


async def test_progress_deadline_exceeded_fails_with_the_controllers_message(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_deployment("doomed", program=deadline_exceeded("doomed"))
    progress = Recorder()

    with pytest.raises(RolloutFailed) as caught:
        await service.restart("doomed", progress, timeout=10)

    assert caught.value.message == (
        "rollout of doomed failed: exceeded its progress deadline: "
        'ReplicaSet "doomed-7d9f8b6c5d" has timed out progressing.'
    )
    assert progress.phases[-1] == "failed"


async def test_forbidden_names_the_verb_and_resource(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_deployment("conductor-e-bot")
    fake.forbid("patch", "deployments", "conductor-e-bot")

    with pytest.raises(KubernetesForbidden) as caught:
        await service.restart("conductor-e-bot", timeout=5)

    assert (
        caught.value.message == "forbidden: cannot patch deployments.apps in namespace conductor-e"
    )
    assert isinstance(caught.value, Forbidden)
    assert to_user_facing(caught.value) is caught.value
    # The user name of the service account is not repeated to the person.
    assert "system:serviceaccount" not in caught.value.message


async def test_missing_deployment_is_not_found(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    with pytest.raises(KubernetesNotFound) as caught:
        await service.restart("absent", timeout=5)

    assert caught.value.message == "deployment absent not found in namespace conductor-e"
    assert isinstance(caught.value, NotFound)
    assert fake.requests_to("PATCH") == []


async def test_target_outside_the_allowlist_is_refused_before_any_request(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_deployment("postgres")

    with pytest.raises(NotAllowed) as restart:
        await service.restart("postgres", timeout=5)
    with pytest.raises(NotAllowed):
        await service.status("postgres")

    assert "'postgres' is not an allowed rollout target" in restart.value.message
    assert "conductor-e-bot" in restart.value.message
    assert fake.requests == []


async def test_paused_deployment_is_not_restarted(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_deployment("conductor-e-bot", paused=True)

    with pytest.raises(DeploymentPaused) as caught:
        await service.restart("conductor-e-bot", timeout=5)

    assert "paused" in caught.value.message
    assert fake.requests_to("PATCH") == []


async def test_a_failing_progress_callback_does_not_abandon_the_rollout(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_deployment("conductor-e-bot")
    calls = 0

    async def broken(event: RolloutProgress) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("discord edit failed")

    result = await service.restart("conductor-e-bot", broken, timeout=10)

    assert result.deployment.complete
    assert calls == 5


async def test_an_api_outage_while_following_does_not_fail_the_rollout(
    fake: FakeKubernetes, service: RolloutService
) -> None:
    fake.add_deployment("conductor-e-bot")
    progress = Recorder()

    async def outage_after_the_patch(event: RolloutProgress) -> None:
        await progress(event)
        if event.phase == "requested":
            fake.outage(2)

    result = await service.restart("conductor-e-bot", outage_after_the_patch, timeout=10)

    assert progress.phases[-1] == "complete"
    statuses = [r for r in fake.requests if r.method == "GET"]
    assert len(statuses) == 1 + 2 + 4  # the first GET, two lost polls, the rollout's four steps
    assert result.requests == len(fake.requests) == 8


async def test_status_reports_the_deployment(fake: FakeKubernetes, service: RolloutService) -> None:
    fake.add_deployment("conductor-e-api", replicas=3, component="api")

    status = await service.status("conductor-e-api")

    assert (status.name, status.desired_replicas, status.available_replicas) == (
        "conductor-e-api",
        3,
        3,
    )
    assert status.complete
    assert status.selector["app.kubernetes.io/component"] == "api"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_cluster_is_a_clear_error(tmp_path: Path, config: RolloutConfig) -> None:
    port = closed_port()
    nobody = FakeKubernetes()
    nobody.url = f"http://127.0.0.1:{port}"
    kubeconfig = nobody.write_kubeconfig(tmp_path / "kubeconfig")
    kube = await KubernetesClient.create(NAMESPACE, kubeconfig=kubeconfig)
    service = RolloutService(kube, config, poll=FAST)
    try:
        with pytest.raises(ClusterUnavailable) as caught:
            await service.restart("conductor-e-bot", timeout=5)
    finally:
        await service.close()

    assert caught.value.message.startswith(
        f"cannot reach the Kubernetes API at http://127.0.0.1:{port}: "
    )
    assert isinstance(caught.value, Unavailable)


async def test_requests_per_rollout_stay_bounded_when_the_rollout_is_slow(
    fake: FakeKubernetes, service: RolloutService, kube: KubernetesClient, config: RolloutConfig
) -> None:
    # One step every 20 ms: a poll that backs off to 10 ms does not send a request per ms.
    fake.add_deployment("conductor-e-bot", step_seconds=0.02)
    started = datetime.now(UTC)

    result = await service.restart("conductor-e-bot", timeout=10)

    elapsed = (datetime.now(UTC) - started) / timedelta(seconds=1)
    assert result.deployment.complete
    assert result.requests == len(fake.requests)
    # At most one poll per maximum interval, plus the GET and PATCH and slack for scheduling.
    assert result.requests <= 2 + elapsed / FAST.maximum + 3
