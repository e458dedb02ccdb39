"""The fake API server refuses what kubectl and flux would not send, as the real one would."""

from __future__ import annotations

import json

import aiohttp
import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from bot.integrations.kubernetes import RESTARTED_AT, KubernetesClient
from tests.fakes.kubernetes import FakeKubernetes
from tests.kubernetes.conftest import NAMESPACE

KS = ("kustomize.toolkit.fluxcd.io", "v1", NAMESPACE, "kustomizations", "conductor-e")


async def test_deployment_patches_other_than_kubectls_are_refused(
    fake: FakeKubernetes, kube: KubernetesClient
) -> None:
    fake.add_deployment("conductor-e-bot")
    apps = k8s.AppsV1Api(kube.api)

    with pytest.raises(ApiException) as shape:
        await apps.patch_namespaced_deployment(
            "conductor-e-bot", NAMESPACE, {"spec": {"replicas": 5}}
        )
    with pytest.raises(ApiException) as media:
        await apps.patch_namespaced_deployment(
            "conductor-e-bot",
            NAMESPACE,
            {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "now"}}}}},
            _content_type="application/json",  # type: ignore[call-arg]
        )
    with pytest.raises(ApiException) as stamp:
        await apps.patch_namespaced_deployment(
            "conductor-e-bot",
            NAMESPACE,
            {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "yesterday"}}}}},
        )

    assert (shape.value.status, json.loads(str(shape.value.body))["reason"]) == (422, "Invalid")
    assert media.value.status == 415
    assert stamp.value.status == 422
    assert fake.deployment("conductor-e-bot")["metadata"]["generation"] == 1
    assert fake.restart_patches == []


async def test_flux_patches_other_than_fluxs_are_refused(
    fake: FakeKubernetes, kube: KubernetesClient
) -> None:
    fake.add_flux("Kustomization", "conductor-e")
    custom = k8s.CustomObjectsApi(kube.api)
    good = {
        "metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "2025-01-01T00:00:00Z"}}
    }

    with pytest.raises(ApiException) as strategic:
        await custom.patch_namespaced_custom_object(
            *KS,
            good,
            _content_type="application/strategic-merge-patch+json",  # type: ignore[call-arg]
        )
    with pytest.raises(ApiException) as force_on_ks:
        await custom.patch_namespaced_custom_object(
            *KS,
            {
                "metadata": {
                    "annotations": {
                        **good["metadata"]["annotations"],
                        "reconcile.fluxcd.io/forceAt": "x",
                    }
                }
            },
            _content_type="application/merge-patch+json",  # type: ignore[call-arg]
        )
    with pytest.raises(ApiException) as spec_change:
        await custom.patch_namespaced_custom_object(
            *KS,
            {"spec": {"suspend": True}},
            _content_type="application/merge-patch+json",  # type: ignore[call-arg]
        )

    assert strategic.value.status == 415
    assert force_on_ks.value.status == 422
    assert spec_change.value.status == 422
    assert fake.reconcile_requests == []


async def test_requests_without_the_token_are_unauthorized(fake: FakeKubernetes) -> None:
    fake.add_deployment("conductor-e-bot")
    async with aiohttp.ClientSession() as http:
        url = f"{fake.url}/apis/apps/v1/namespaces/{NAMESPACE}/deployments/conductor-e-bot"
        async with http.get(url) as response:
            body = await response.json()
    assert response.status == 401
    assert body["kind"] == "Status"


async def test_forbidden_is_rbacs_status_object(
    fake: FakeKubernetes, kube: KubernetesClient
) -> None:
    fake.add_deployment("conductor-e-bot")
    fake.forbid("get", "deployments")
    apps = k8s.AppsV1Api(kube.api)

    with pytest.raises(ApiException) as caught:
        await apps.read_namespaced_deployment("conductor-e-bot", NAMESPACE)

    status = json.loads(str(caught.value.body))
    assert status["kind"] == "Status"
    assert status["reason"] == "Forbidden"
    assert status["details"] == {"name": "conductor-e-bot", "group": "apps", "kind": "deployments"}
    assert 'cannot get resource "deployments" in API group "apps"' in status["message"]
