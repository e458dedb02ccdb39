"""Fixtures: a fake API server, a kubeconfig pointing at it, the real client and the service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.integrations.kubernetes import KubernetesClient
from bot.services.cluster.polling import PollPolicy
from bot.services.cluster.redaction import Redactor
from bot.services.cluster.rollouts import RolloutConfig, RolloutService
from tests.fakes.kubernetes import FakeKubernetes

NAMESPACE = "conductor-e"
# Fast polling: the fake's rollouts move one step per GET, so nothing waits on the wall clock
# except the deliberate timeouts, which are short.
FAST = PollPolicy(initial=0.001, factor=2.0, maximum=0.01)
SECRET = "s3cr3t-database-password"


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubernetes]:
    async with FakeKubernetes(namespace=NAMESPACE) as server:
        yield server


@pytest.fixture
def kubeconfig(fake: FakeKubernetes, tmp_path: Path) -> Path:
    return fake.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[KubernetesClient]:
    client = await KubernetesClient.create(NAMESPACE, kubeconfig=kubeconfig, context="fake")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def config() -> RolloutConfig:
    return RolloutConfig(
        namespace=NAMESPACE,
        rollout_targets=("conductor-e-bot", "conductor-e-api", "stuck", "doomed", "absent"),
        flux_objects=(
            "kustomization/conductor-e",
            "helmrelease/conductor-e",
            "gitrepository/conductor-e",
        ),
    )


@pytest.fixture
def service(kube: KubernetesClient, config: RolloutConfig) -> RolloutService:
    return RolloutService(kube, config, redactor=Redactor([SECRET]), poll=FAST)
