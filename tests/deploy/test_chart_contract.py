"""What the rendered chart promises: settings that exist, secrets by reference only, least
privilege, hardened pods, the CronJob's command. Checked on every values file."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices, SecretStr

from bot.settings import Settings
from tests.deploy.helpers import (
    VALUES_FILES,
    app_image,
    containers,
    documented_secret_keys,
    find,
    load_docs,
    pod_spec,
    render,
    render_text,
    workloads,
)

# The postgres image's own variables, set only on the PostgreSQL container.
POSTGRES_IMAGE_ENV = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "PGDATA", "PGPORT"}
# What the issue allows the Role to grant: (apiGroup, resource) -> verbs.
ALLOWED_RULES = {
    ("apps", "deployments"): {"get", "patch"},
    ("kustomize.toolkit.fluxcd.io", "kustomizations"): {"get", "list", "patch"},
    ("helm.toolkit.fluxcd.io", "helmreleases"): {"get", "list", "patch"},
    ("source.toolkit.fluxcd.io", "gitrepositories"): {"get", "list", "patch"},
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},
}
NAMED_ONLY = {
    ("apps", "deployments"),
    ("kustomize.toolkit.fluxcd.io", "kustomizations"),
    ("helm.toolkit.fluxcd.io", "helmreleases"),
    ("source.toolkit.fluxcd.io", "gitrepositories"),
}


def _aliases(field: Any) -> set[str]:
    names = set()
    if field.alias:
        names.add(field.alias)
    if isinstance(field.validation_alias, AliasChoices):
        names |= {c for c in field.validation_alias.choices if isinstance(c, str)}
    elif isinstance(field.validation_alias, str):
        names.add(field.validation_alias)
    return {n for n in names if n.isupper()}


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


SETTINGS_ENV = set().union(*(_aliases(f) for f in Settings.model_fields.values()))
SECRET_ENV = set().union(
    *(_aliases(f) for f in Settings.model_fields.values() if _is_secret(f.annotation))
)


def test_settings_were_read() -> None:
    # Guards the tests below against an empty alias set passing them vacuously.
    assert {"DATABASE_URL", "CONDUCTOR_HTTP_PORT", "ANTHROPIC_BASE_URL"} <= SETTINGS_ENV
    assert {"DISCORD_BOT_TOKEN", "DATABASE_URL", "CONDUCTOR_API_TOKENS"} <= SECRET_ENV
    assert "CONDUCTOR_LOG_LEVEL" not in SECRET_ENV


@pytest.fixture(scope="module", params=list(VALUES_FILES))
def rendered(request: pytest.FixtureRequest, helm: Path) -> list[dict[str, Any]]:
    path = VALUES_FILES[request.param]
    return render(helm, [path] if path else [])


def test_every_env_var_is_a_setting_of_the_application(rendered: list[dict[str, Any]]) -> None:
    checked = 0
    for doc in workloads(rendered):
        for container in containers(doc):
            names = {env["name"] for env in container.get("env", [])}
            allowed = SETTINGS_ENV if app_image(doc) else POSTGRES_IMAGE_ENV
            unknown = names - allowed
            assert not unknown, f"{doc['kind']}/{doc['metadata']['name']} sets {unknown}"
            checked += len(names)
    for doc in rendered:
        # The prices ConfigMap holds a file (mounted, named by CONDUCTOR_PRICES_FILE), not env.
        if doc["kind"] == "ConfigMap" and not doc["metadata"]["name"].endswith("-prices"):
            unknown = set(doc["data"]) - SETTINGS_ENV
            assert not unknown, f"ConfigMap keys that are not settings: {unknown}"
            checked += len(doc["data"])
    assert checked > 10


# Settings that may carry a secret but that the chart renders without one: the Valkey URL
# never holds a password there (VALKEY_PASSWORD comes from the Secret's valkey-password key).
PASSWORDLESS_URLS = {"CONDUCTOR_VALKEY_URL"}


def test_the_configmap_holds_no_secret_setting(rendered: list[dict[str, Any]]) -> None:
    for doc in rendered:
        if doc["kind"] == "ConfigMap":
            assert not set(doc["data"]) & (SECRET_ENV - PASSWORDLESS_URLS)
            for name in PASSWORDLESS_URLS & set(doc["data"]):
                assert "@" not in doc["data"][name], name


def test_secret_settings_come_only_from_the_secret(rendered: list[dict[str, Any]]) -> None:
    documented = documented_secret_keys()
    assert len(documented) >= 6
    for doc in workloads(rendered):
        for container in containers(doc):
            for env in container.get("env", []):
                where = f"{doc['metadata']['name']}: {env['name']}"
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] == "conductor-e-secrets", where
                    assert ref["key"] in documented, f"{where} uses undocumented key {ref['key']}"
                    if app_image(doc):
                        assert documented[ref["key"]] == env["name"], where
                elif env["name"] in SECRET_ENV:
                    # Only DATABASE_URL composed from $(POSTGRES_PASSWORD) is a literal, and it
                    # carries no password.
                    assert env["name"] == "DATABASE_URL", where
                    assert re.fullmatch(
                        r"postgresql://[a-z_0-9]+:\$\(POSTGRES_PASSWORD\)@[a-z0-9-]+:\d+/[a-z_0-9]+",
                        env["value"],
                    ), where
                    names = [e["name"] for e in container["env"]]
                    # Dependent variables expand only from variables defined before them.
                    assert names.index("POSTGRES_PASSWORD") < names.index("DATABASE_URL"), where


def test_the_six_production_keys_are_documented() -> None:
    assert {
        "discord-bot-token",
        "anthropic-api-key",
        "github-token",
        "postgres-password",
        "discord-webhook-url",
        "database-url",
    } <= set(documented_secret_keys())


def _env_names(doc: dict[str, Any]) -> set[str]:
    return {e["name"] for c in containers(doc) for e in c.get("env", [])}


def test_each_secret_goes_only_to_the_pods_that_use_it(helm: Path) -> None:
    docs = render(helm)
    api = _env_names(find(docs, "Deployment", "conductor-e-api"))
    assert not api & {"DISCORD_BOT_TOKEN", "ANTHROPIC_API_KEY", "DISCORD_WEBHOOK_URL"}
    # The API acts on GitHub: the merge gate on webhooks, repo configs, the steering labels.
    assert "GITHUB_TOKEN" in api
    cron = _env_names(find(docs, "CronJob", "conductor-e-coordinate"))
    assert "DISCORD_BOT_TOKEN" not in cron
    assert {"GITHUB_TOKEN", "ANTHROPIC_API_KEY", "DISCORD_WEBHOOK_URL", "DATABASE_URL"} <= cron
    migrate = _env_names(find(docs, "Job", "conductor-e-migrate"))
    assert migrate <= {"DATABASE_URL", "POSTGRES_PASSWORD", "CONDUCTOR_LOG_LEVEL"}
    postgres = _env_names(find(docs, "StatefulSet", "conductor-e-postgresql"))
    assert "DATABASE_URL" not in postgres
    test_pod = find(docs, "Pod", "conductor-e-test-health")
    assert not _env_names(test_pod)

    external = render(
        helm, sets={"postgresql.enabled": "false", "externalDatabase.enabled": "true"}
    )
    for doc in workloads(external):
        names = _env_names(doc)
        assert "POSTGRES_PASSWORD" not in names
    assert not [d for d in external if d["kind"] == "StatefulSet"]


SECRET_SHAPES = [
    r"sk-ant-[A-Za-z0-9_-]+",
    r"gh[pousr]_[A-Za-z0-9]{20,}",
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"discord(app)?\.com/api/webhooks/\d+/[\w-]+",
    r"postgres(ql)?://[^:\s/]+:(?!\$\(POSTGRES_PASSWORD\))[^@\s]+@",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
]


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_no_rendered_manifest_holds_a_secret_value(helm: Path, name: str) -> None:
    path = VALUES_FILES[name]
    text = render_text(helm, [path] if path else [])
    for shape in SECRET_SHAPES:
        assert not re.search(shape, text), f"a secret-shaped string ({shape}) was rendered"
    docs = load_docs(text)
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not create Secrets"


def test_the_role_grants_only_what_the_admin_commands_need(helm: Path) -> None:
    for path in [None, VALUES_FILES["full"]]:
        docs = render(helm, [path] if path else [])
        assert not [d for d in docs if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
        roles = [d for d in docs if d["kind"] == "Role"]
        assert len(roles) == 1
        for rule in roles[0]["rules"]:
            assert "nonResourceURLs" not in rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    key = (group, resource)
                    assert key in ALLOWED_RULES, f"the Role grants {key}"
                    assert set(rule["verbs"]) <= ALLOWED_RULES[key], f"{key}: {rule['verbs']}"
                    assert "*" not in rule["verbs"]
                    if key in NAMED_ONLY:
                        assert rule.get("resourceNames"), f"{key} without resourceNames"
        binding = find(docs, "RoleBinding", "conductor-e-admin")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "conductor-e-admin",
        }


def test_the_role_names_exactly_the_allowlisted_objects(helm: Path) -> None:
    docs = render(helm, [VALUES_FILES["full"]])
    rules = {
        (r["apiGroups"][0], r["resources"][0]): r
        for r in find(docs, "Role", "conductor-e-admin")["rules"]
    }
    assert rules[("apps", "deployments")]["resourceNames"] == [
        "conductor-e-api",
        "dev-e",
        "review-e",
    ]
    assert rules[("helm.toolkit.fluxcd.io", "helmreleases")]["resourceNames"] == ["conductor-e"]
    config = find(docs, "ConfigMap", "conductor-e")["data"]
    assert config["CONDUCTOR_ROLLOUT_TARGETS"] == "conductor-e-api,dev-e,review-e"
    assert Settings.model_validate(
        {"CONDUCTOR_FLUX_OBJECTS": config["CONDUCTOR_FLUX_OBJECTS"]}
    ).flux_objects == [
        "helmrelease/conductor-e",
        "kustomization/conductor-e",
        "gitrepository/conductor-e",
    ]

    # No allowlist: no deployment or Flux rule at all (an empty resourceNames means "all").
    default_rules = find(render(helm), "Role", "conductor-e-admin")["rules"]
    assert {(r["apiGroups"][0], r["resources"][0]) for r in default_rules} == {
        ("", "pods"),
        ("", "pods/log"),
    }


def test_the_rendered_config_is_accepted_by_the_application(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, [VALUES_FILES["full"]])
    config = find(docs, "ConfigMap", "conductor-e")["data"]
    # The prices file as the pods see it: the chart's ConfigMap, mounted where the setting says.
    mounted = Path(config["CONDUCTOR_PRICES_FILE"])
    assert mounted == Path("/etc/conductor-e/prices/prices.yaml")
    prices = tmp_path / mounted.name
    prices.write_text(find(docs, "ConfigMap", "conductor-e-prices")["data"]["prices.yaml"])
    settings = Settings.model_validate({**config, "CONDUCTOR_PRICES_FILE": str(prices)})
    assert settings.price_overrides is not None
    assert [m.model for m in settings.price_overrides.models] == [
        "claude-sonnet-4-6",
        "claude-next-5",
    ]
    for name in ("conductor-e-api", "conductor-e-bot"):
        pod = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "prices"]
        assert mount == {"name": "prices", "mountPath": str(mounted.parent), "readOnly": True}
        (volume,) = [v for v in pod["volumes"] if v["name"] == "prices"]
        assert volume["configMap"]["name"] == "conductor-e-prices"
    assert settings.managed_repos == ["example/dev-e", "example/review-e"]
    assert settings.guild_id == 123456789012345678
    assert settings.agent_budgets_usd == {"dev-e": 150.0, "review-e": 75.5}
    assert settings.priority_labels == {"priority:critical": "critical", "p1": "high"}


def test_the_cronjob_runs_one_coordination_at_a_time(helm: Path) -> None:
    docs = render(helm)
    cron = find(docs, "CronJob", "conductor-e-coordinate")
    spec = cron["spec"]
    assert spec["schedule"] == "*/5 * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == 3
    assert spec["failedJobsHistoryLimit"] == 3
    (container,) = containers(cron)
    assert container["args"] == ["coordinate", "--once"]
    assert "command" not in container  # the image's entrypoint is `conductor-e`


def test_components_run_the_right_commands_with_one_image(helm: Path) -> None:
    docs = render(helm)
    expected = {
        ("Deployment", "conductor-e-bot"): ["bot"],
        ("Deployment", "conductor-e-api"): ["api"],
        ("CronJob", "conductor-e-coordinate"): ["coordinate", "--once"],
        ("Job", "conductor-e-migrate"): ["migrate"],
    }
    images = set()
    for (kind, name), args in expected.items():
        (container,) = containers(find(docs, kind, name))
        assert container["args"] == args
        images.add(container["image"])
    (test_container,) = containers(find(docs, "Pod", "conductor-e-test-health"))
    images.add(test_container["image"])
    assert images == {"ghcr.io/owner/conductor-e:0.1.0"}
    assert "/health" in " ".join(test_container["command"])


def test_bot_is_a_single_recreated_replica_and_api_rolls(helm: Path) -> None:
    docs = render(helm, sets={"api.replicaCount": "3"})
    bot = find(docs, "Deployment", "conductor-e-bot")
    assert bot["spec"]["replicas"] == 1
    assert bot["spec"]["strategy"] == {"type": "Recreate"}
    api = find(docs, "Deployment", "conductor-e-api")
    assert api["spec"]["replicas"] == 3
    assert api["spec"]["strategy"]["type"] == "RollingUpdate"
    (container,) = containers(api)
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz/deep"
    service = find(docs, "Service", "conductor-e-api")
    assert service["spec"]["ports"][0]["port"] == 8080
    pdb = find(docs, "PodDisruptionBudget", "conductor-e-api")
    assert pdb["spec"]["selector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]


def test_migration_hook_order_depends_on_where_postgres_is(helm: Path) -> None:
    job = find(render(helm), "Job", "conductor-e-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    external = render(
        helm, sets={"postgresql.enabled": "false", "externalDatabase.enabled": "true"}
    )
    job = find(external, "Job", "conductor-e-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "serviceAccountName" not in pod_spec(job)
    assert not any("configMapRef" in str(c.get("envFrom")) for c in containers(job))


def test_postgres_is_16_alpine_with_a_volume_claim(helm: Path) -> None:
    sts = find(render(helm), "StatefulSet", "conductor-e-postgresql")
    (container,) = containers(sts)
    assert container["image"] == "postgres:16-alpine"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"


@pytest.mark.parametrize("name", list(VALUES_FILES))
def test_every_pod_is_hardened(helm: Path, name: str) -> None:
    path = VALUES_FILES[name]
    for doc in workloads(render(helm, [path] if path else [])):
        spec = pod_spec(doc)
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] > 0, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in containers(doc):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where
        token = spec.get("automountServiceAccountToken")
        needs_api = doc["metadata"]["name"] in {"conductor-e-bot", "conductor-e-coordinate"}
        assert token is needs_api, f"{where}: automountServiceAccountToken={token}"


def test_network_policies_fence_the_api_and_postgres(helm: Path) -> None:
    docs = render(helm, [VALUES_FILES["full"]])
    api = find(docs, "NetworkPolicy", "conductor-e-api")
    peers = api["spec"]["ingress"][0]["from"]
    own = peers[0]["podSelector"]["matchExpressions"][0]
    assert own["values"] == ["bot", "test"]
    agents = peers[1]["namespaceSelector"]["matchExpressions"][0]
    assert agents == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["dev-e", "review-e"],
    }
    pg = find(docs, "NetworkPolicy", "conductor-e-postgresql")
    (rule,) = pg["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}, "PostgreSQL must not be reachable from other namespaces"
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "conductor-e"
    closed = find(docs, "NetworkPolicy", "conductor-e-no-ingress")
    assert closed["spec"]["ingress"] == []


def test_values_file_examples_stay_valid_yaml() -> None:
    for path in VALUES_FILES.values():
        if path:
            assert isinstance(yaml.safe_load(path.read_text()), dict)
