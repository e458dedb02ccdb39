"""The chart with the real helm: lint, render, schema, validation messages, README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import (
    CHART,
    KUBE_VERSIONS,
    VALUES_FILES,
    HelmError,
    find,
    render,
    run,
    template_args,
)

VALUES_IDS = list(VALUES_FILES)


def _values(name: str) -> list[Path]:
    path = VALUES_FILES[name]
    return [path] if path else []


@pytest.mark.parametrize("name", VALUES_IDS)
def test_helm_lint_strict_passes(helm: Path, name: str) -> None:
    args: list[str | Path] = [helm, "lint", "--strict", CHART]
    for path in _values(name):
        args += ["--values", path]
    result = run(args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", VALUES_IDS)
def test_helm_template_renders(helm: Path, name: str, kube_version: str) -> None:
    docs = render(helm, _values(name), kube_version=kube_version)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "Service", "ConfigMap", "Job", "Pod"} <= kinds


def test_chart_refuses_kubernetes_older_than_supported(helm: Path) -> None:
    result = run(template_args(helm, kube_version="1.28.0"), check=False)
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "incompatible" in result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"externalDatabase.enabled": "true"},
            "postgresql.enabled and externalDatabase.enabled are both true",
        ),
        ({"postgresql.enabled": "false"}, "no database: set postgresql.enabled=true"),
        ({"existingSecret": ""}, "existingSecret is empty"),
        (
            {"api.podDisruptionBudget.minAvailable": "1"},
            "api.podDisruptionBudget: set minAvailable or maxUnavailable, not both",
        ),
        (
            {
                "api.podDisruptionBudget.maxUnavailable": "",
                "api.podDisruptionBudget.minAvailable": "2",
            },
            "api.podDisruptionBudget.minAvailable (2) must be below api.replicaCount (2)",
        ),
        (
            {"admin.rolloutTargets[0]": "dev-e", "rbac.create": "false"},
            "rbac.create=false: the bot would be refused every admin action",
        ),
        (
            {"admin.fluxObjects[0]": "helmrelease/conductor-e", "bot.enabled": "false"},
            "bot.enabled=false: only the bot runs admin commands",
        ),
        (
            {"rbac.create": "true", "serviceAccount.create": "false"},
            "needs serviceAccount.name",
        ),
        ({"api.enabled": "false"}, "tests.enabled=true needs api.enabled=true"),
        ({"cronJob.activeDeadlineSeconds": "300"}, "must be under 300 with the */5 schedule"),
        ({"api.ingress.enabled": "true"}, "api.ingress.enabled=true needs api.ingress.host"),
    ],
)
def test_contradictory_values_fail_with_the_helpers_message(
    helm: Path, sets: dict[str, str], message: str
) -> None:
    with pytest.raises(HelmError) as caught:
        render(helm, sets=sets)
    text = str(caught.value)
    assert "conductor-e: invalid values:" in text
    assert message in text


def test_two_contradictions_are_reported_together(helm: Path) -> None:
    with pytest.raises(HelmError) as caught:
        render(helm, sets={"externalDatabase.enabled": "true", "existingSecret": ""})
    text = str(caught.value)
    assert "both true" in text and "existingSecret is empty" in text


@pytest.mark.parametrize(
    ("sets", "fragment"),
    [
        ({"config.discordBotToken": "x"}, "additional properties 'discordBotToken' not allowed"),
        ({"bot.replicaCount": "2"}, "additional properties 'replicaCount' not allowed"),
        ({"config.logLevel": "TRACE"}, "logLevel"),
        ({"admin.fluxObjects[0]": "deployment/x"}, "fluxObjects"),
        ({"config.managedRepos[0]": "not-a-repo"}, "managedRepos"),
        ({"config.guildId": "12ab"}, "guildId"),
    ],
)
def test_schema_rejects_unknown_and_malformed_values(
    helm: Path, sets: dict[str, str], fragment: str
) -> None:
    with pytest.raises(HelmError) as caught:
        render(helm, sets=sets)
    assert fragment in str(caught.value)


def _schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


def _object_schemas(schema: dict, path: str = "") -> list[tuple[str, dict]]:
    found = []
    for key, sub in schema.get("properties", {}).items():
        if isinstance(sub, dict) and "properties" in sub:
            found.append((f"{path}{key}", sub))
            found += _object_schemas(sub, f"{path}{key}.")
    return found


def test_schema_closes_every_section_of_ours() -> None:
    schema = _schema()
    assert schema["additionalProperties"] is False
    sections = _object_schemas(schema)
    assert len(sections) > 10
    for path, sub in sections:
        assert sub.get("additionalProperties") is False, f"{path} accepts unknown keys"


def _leaves(values: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in {"requests", "limits"}:
            out += _leaves(value, f"{path}.")
        else:
            out.append(path)
    return out


def test_every_default_value_is_in_the_schema_and_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    schema = _schema()
    for leaf in _leaves(values):
        node = schema
        for part in leaf.split("."):
            assert part in node.get("properties", {}), f"{leaf} is not in values.schema.json"
            node = node["properties"][part]
        assert f"`{leaf}`" in readme, f"{leaf} is not documented in the chart README"


def test_notes_tell_how_to_check_health(helm: Path) -> None:
    result = run(
        [helm, "install", "conductor-e", CHART, "--namespace", "conductor-e", "--dry-run=client"]
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "curl -s http://127.0.0.1:8080/health" in notes
    assert "/healthz/deep" in notes
    assert "helm test conductor-e -n conductor-e" in notes
    assert "port-forward service/conductor-e-api 8080:8080" in notes


def test_cron_and_bot_loop_are_one_or_the_other(helm: Path) -> None:
    with_cron = render(helm)
    bot = find(with_cron, "Deployment", "conductor-e-bot")
    env = {e["name"]: e for e in bot["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CONDUCTOR_LOOP_ENABLED"]["value"] == "false"
    assert "DISCORD_WEBHOOK_URL" not in env  # only the CronJob posts summaries
    find(with_cron, "CronJob", "conductor-e-coordinate")

    without_cron = render(helm, sets={"cronJob.enabled": "false"})
    assert not [d for d in without_cron if d["kind"] == "CronJob"]
    bot = find(without_cron, "Deployment", "conductor-e-bot")
    env = {e["name"]: e for e in bot["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CONDUCTOR_LOOP_ENABLED"]["value"] == "true"
    assert env["DISCORD_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]["key"] == "discord-webhook-url"


def test_config_change_changes_the_pod_checksum(helm: Path) -> None:
    def checksums(sets: dict[str, str]) -> dict[str, str]:
        docs = render(helm, sets=sets)
        out = {}
        for name in ("conductor-e-bot", "conductor-e-api"):
            meta = find(docs, "Deployment", name)["spec"]["template"]["metadata"]
            out[name] = meta["annotations"]["checksum/config"]
        cron = find(docs, "CronJob", "conductor-e-coordinate")
        meta = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
        out["cron"] = meta["annotations"]["checksum/config"]
        return out

    before = checksums({})
    after = checksums({"config.logLevel": "DEBUG"})
    assert len(set(before.values())) == 1
    for name in before:
        assert before[name] != after[name], f"{name} would not restart on a config change"
    assert checksums({}) == before  # stable when nothing changes


def test_the_dashboard_is_exposed_through_the_api_service_and_an_optional_ingress(
    helm: Path,
) -> None:
    assert not [d for d in render(helm) if d["kind"] == "Ingress"]
    docs = render(helm, sets={"api.ingress.enabled": "true", "api.ingress.host": "ce.example"})
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "ce.example"
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/"
    assert path["backend"]["service"] == {"name": "conductor-e-api", "port": {"name": "http"}}


def test_the_prices_file_is_optional_and_can_be_your_own_configmap(helm: Path) -> None:
    def pods(docs: list[dict]) -> list[dict]:
        cron = find(docs, "CronJob", "conductor-e-coordinate")["spec"]["jobTemplate"]["spec"]
        return [
            find(docs, "Deployment", "conductor-e-api")["spec"]["template"]["spec"],
            find(docs, "Deployment", "conductor-e-bot")["spec"]["template"]["spec"],
            cron["template"]["spec"],
        ]

    plain = render(helm)
    assert "CONDUCTOR_PRICES_FILE" not in find(plain, "ConfigMap", "conductor-e")["data"]
    assert not [d for d in plain if d["metadata"]["name"] == "conductor-e-prices"]
    for pod in pods(plain):
        assert "prices" not in {v["name"] for v in pod["volumes"]}

    own = render(helm, sets={"prices.existingConfigMap": "our-prices"})
    config = find(own, "ConfigMap", "conductor-e")["data"]
    assert config["CONDUCTOR_PRICES_FILE"] == "/etc/conductor-e/prices/prices.yaml"
    for pod in pods(own):
        (volume,) = [v for v in pod["volumes"] if v["name"] == "prices"]
        assert volume["configMap"]["name"] == "our-prices"
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["prices"]["mountPath"] == "/etc/conductor-e/prices"

    # A price change restarts the pods that read the file.
    def checksum(sets: dict[str, str]) -> str:
        api = find(render(helm, sets=sets), "Deployment", "conductor-e-api")
        return api["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    one = {
        "prices.models[0].model": "claude-next-5",
        "prices.models[0].prices[0].effective": "2026-12-01",
        "prices.models[0].prices[0].input": "4",
        "prices.models[0].prices[0].output": "20",
        "prices.models[0].prices[0].cache_write_5m": "5",
        "prices.models[0].prices[0].cache_write_1h": "8",
        "prices.models[0].prices[0].cache_read": "1",  # --set makes 0.4 a string
    }
    assert checksum(one) != checksum({**one, "prices.models[0].prices[0].input": "3"})

    with pytest.raises(
        HelmError, match=r"prices\.models and prices\.existingConfigMap are both set"
    ):
        render(helm, sets={**one, "prices.existingConfigMap": "our-prices"})
    with pytest.raises(HelmError, match="cache_read"):
        render(helm, sets={k: v for k, v in one.items() if not k.endswith("cache_read")})
