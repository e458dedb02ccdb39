"""Where the client's configuration comes from, and the service built from the settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.integrations.kubernetes import (
    ClusterUnavailable,
    KubernetesClient,
    load_configuration,
)
from bot.services.cluster.rollouts import NotAllowed, RolloutService
from bot.settings import load_settings
from tests.fakes.kubernetes import FakeKubernetes
from tests.kubernetes.conftest import NAMESPACE


async def test_kubeconfig_context_is_honoured(fake: FakeKubernetes, tmp_path: Path) -> None:
    path = fake.write_kubeconfig(tmp_path / "kubeconfig", context="good")
    config = json.loads(path.read_text())
    # A second context, current by default, pointing nowhere.
    config["clusters"].append({"name": "elsewhere", "cluster": {"server": "http://127.0.0.1:9"}})
    config["contexts"].append(
        {"name": "bad", "context": {"cluster": "elsewhere", "user": "conductor-e"}}
    )
    config["current-context"] = "bad"
    path.write_text(json.dumps(config))

    chosen = await load_configuration(path, "good", environ={})
    default = await load_configuration(path, None, environ={})

    assert chosen.host == fake.url
    assert chosen.api_key["BearerToken"] == f"Bearer {fake.token}"
    assert default.host == "http://127.0.0.1:9"


async def test_in_cluster_configuration_in_a_pod(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("pod-token")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}

    configuration = await load_configuration(environ=environ, service_account=tmp_path)

    assert configuration.host == "https://10.96.0.1:443"
    assert configuration.api_key["BearerToken"] == "Bearer pod-token"
    assert configuration.ssl_ca_cert == str(tmp_path / "ca.crt")


async def test_explicit_kubeconfig_wins_over_the_pod(fake: FakeKubernetes, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("pod-token")
    (tmp_path / "ca.crt").write_text("ca")
    kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}

    configuration = await load_configuration(kubeconfig, environ=environ, service_account=tmp_path)

    assert configuration.host == fake.url


async def test_no_configuration_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))

    with pytest.raises(ClusterUnavailable) as caught:
        await load_configuration(environ={}, service_account=tmp_path / "absent")

    assert caught.value.message == (
        "Kubernetes is not configured: no kubeconfig and not running in a pod"
    )


async def test_service_from_settings_uses_the_allowlists_and_redacts_secrets(
    fake: FakeKubernetes, kubeconfig: Path
) -> None:
    settings = load_settings(
        {
            "CONDUCTOR_KUBECONFIG": str(kubeconfig),
            "CONDUCTOR_NAMESPACE": NAMESPACE,
            "CONDUCTOR_ROLLOUT_TARGETS": "conductor-e-bot, conductor-e-api",
            "CONDUCTOR_FLUX_OBJECTS": "Kustomization/conductor-e,helmrelease/conductor-e",
            "GITHUB_TOKEN": "plain-looking-github-secret",
            "CONDUCTOR_API_TOKENS": "dev-e=0123456789abcdef-agent",
        }
    )
    kube = await KubernetesClient.create(
        settings.namespace, kubeconfig=settings.kubeconfig, context=settings.kube_context
    )
    service = RolloutService.from_settings(kube, settings)
    try:
        assert service.config.rollout_targets == ("conductor-e-bot", "conductor-e-api")
        assert service.config.flux_objects == (
            "kustomization/conductor-e",
            "helmrelease/conductor-e",
        )
        assert service.redactor.redact("gh plain-looking-github-secret x") == "gh [REDACTED] x"
        assert service.redactor.redact("agent 0123456789abcdef-agent") == "agent [REDACTED]"
        fake.add_flux("Kustomization", "conductor-e")
        statuses = await service.flux_status("kustomization")
        assert [s.ready for s in statuses] == [True]
        with pytest.raises(NotAllowed):
            await service.status("postgres")
    finally:
        await service.close()
