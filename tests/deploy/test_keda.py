"""Push dispatch in the chart: the Valkey settings, the in-chart Valkey, and KEDA's
ScaledObjects and TriggerAuthentication against minimal schemas of those CRDs (as for Flux)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.deploy.helpers import NAMESPACE, SCHEMAS, VALUES_FILES, HelmError, find, render

SCHEMA_FILES = {
    "ScaledObject": "scaledobject-keda-v1alpha1.json",
    "TriggerAuthentication": "triggerauthentication-keda-v1alpha1.json",
}


def _schema(kind: str) -> dict[str, Any]:
    schema = json.loads((SCHEMAS / SCHEMA_FILES[kind]).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def _errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema(doc["kind"]))
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(doc)]


def _keda(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["apiVersion"].startswith("keda.sh/")]


@pytest.mark.parametrize("name", ["full", "external-db"])
def test_keda_objects_match_their_schemas(helm: Path, name: str) -> None:
    path = VALUES_FILES[name]
    assert path is not None
    docs = _keda(render(helm, [path]))
    assert {d["kind"] for d in docs} == set(SCHEMA_FILES)
    for doc in docs:
        assert _errors(doc) == [], doc["metadata"]["name"]


def test_each_scaled_agent_wakes_on_its_signal_list(helm: Path) -> None:
    path = VALUES_FILES["full"]
    assert path is not None
    docs = render(helm, [path])
    scaled = find(docs, "ScaledObject", "review-e")
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "review-e",
    }
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 2)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"] == {
        # KEDA's operator resolves names in its own namespace: the Service's full name.
        "address": f"conductor-e-valkey.{NAMESPACE}.svc:6379",
        "listName": "signal:review-e",
        "listLength": "1",
    }
    assert trigger["authenticationRef"] == {"name": "conductor-e-valkey"}
    auth = find(docs, "TriggerAuthentication", "conductor-e-valkey")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "conductor-e-secrets", "key": "valkey-password"}
    ]
    config = find(docs, "ConfigMap", "conductor-e")["data"]
    assert config["CONDUCTOR_VALKEY_URL"] == "redis://conductor-e-valkey:6379/0"
    assert config["CONDUCTOR_DISPATCH_DEPTH"] == "1"
    valkey = find(docs, "StatefulSet", "conductor-e-valkey")
    container = valkey["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-2:] == ["--requirepass", "$(VALKEY_PASSWORD)"]
    assert "always" in container["args"]  # every write fsync'd


def test_external_valkey_over_tls(helm: Path) -> None:
    path = VALUES_FILES["external-db"]
    assert path is not None
    docs = render(helm, [path])
    assert not [
        d
        for d in docs
        if d["metadata"]["name"].endswith("-valkey") and d["kind"] != "TriggerAuthentication"
    ]
    config = find(docs, "ConfigMap", "conductor-e")["data"]
    assert config["CONDUCTOR_VALKEY_URL"] == "rediss://valkey.example.internal:6380"
    (trigger,) = find(docs, "ScaledObject", "dev-e-node")["spec"]["triggers"]
    assert trigger["metadata"]["address"] == "valkey.example.internal:6380"
    assert trigger["metadata"]["enableTLS"] == "true"


def test_without_dispatch_nothing_of_it_renders(helm: Path) -> None:
    docs = render(helm)
    assert _keda(docs) == []
    assert "CONDUCTOR_VALKEY_URL" not in find(docs, "ConfigMap", "conductor-e")["data"]


def _drop_list_name(doc: dict[str, Any]) -> None:
    del doc["spec"]["triggers"][0]["metadata"]["listName"]


def _number_length(doc: dict[str, Any]) -> None:
    doc["spec"]["triggers"][0]["metadata"]["listLength"] = 1


def _typo(doc: dict[str, Any]) -> None:
    doc["spec"]["maxReplicas"] = 2


@pytest.mark.parametrize("mutate", [_drop_list_name, _number_length, _typo])
def test_the_keda_schema_catches_mistakes(helm: Path, mutate: Callable[..., None]) -> None:
    path = VALUES_FILES["full"]
    assert path is not None
    doc = copy.deepcopy(find(render(helm, [path]), "ScaledObject", "dev-e-python"))
    mutate(doc)
    assert _errors(doc)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"dispatch.enabled": "true"}, "dispatch.enabled=true needs a Valkey"),
        (
            {
                "dispatch.enabled": "true",
                "dispatch.valkey.enabled": "true",
                "dispatch.externalUrl": "redis://v:6379",
            },
            "choose the in-chart Valkey or an external one",
        ),
        (
            {"dispatch.enabled": "true", "dispatch.externalUrl": "redis://:secret@v:6379"},
            "dispatch.externalUrl must be redis://host:port",
        ),
        (
            {"dispatch.scaledAgents[0].deployment": "a", "dispatch.scaledAgents[0].agentId": "a"},
            "dispatch.enabled=false: nothing would ever signal those agents",
        ),
    ],
)
def test_contradictory_dispatch_values_fail(helm: Path, sets: dict[str, str], message: str) -> None:
    with pytest.raises(HelmError) as caught:
        render(helm, sets=sets)
    assert message in str(caught.value)
