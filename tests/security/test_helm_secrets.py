"""The rendered chart carries no secret: credentials come only from the existing Secret.

The chart is rendered by the real `helm` with every CI values file and with non-secret
settings given through --set; no Secret with data is rendered, every secret variable of every
container is a secretKeyRef, the ConfigMap holds only CONDUCTOR_* settings, and a secret pushed
through --set into the config is refused without helm echoing its value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helpers import (
    VALUES_FILES,
    HelmError,
    containers,
    load_docs,
    render_text,
    workloads,
)

pytestmark = pytest.mark.slow

SECRET_VARIABLES = {
    "DISCORD_BOT_TOKEN",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_ADMIN_KEY",
    "GITHUB_TOKEN",
    "POSTGRES_PASSWORD",
    "DISCORD_WEBHOOK_URL",
    "DATABASE_URL",
    "CONDUCTOR_GITHUB_WEBHOOK_SECRET",
    "CONDUCTOR_API_TOKENS",
    "CONDUCTOR_DASHBOARD_TOKEN",
}
# Non-secret settings with recognisable values: they must reach the ConfigMap and nothing
# else may carry a secret beside them.
CONFIG_SETS = {
    "config.githubOrg": "acme-leakcheck-org",
    "config.summaryModel": "claude-leakcheck-model",
    "config.agentReadyLabel": "leakcheck-ready",
    "config.githubApiUrl": "https://ghe.leakcheck.example/api/v3",
}
LEAK = "SECRETLEAK-helm-value-4d5e6f"


def env_of(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}", e)
        for c in containers(doc)
        for e in c.get("env") or []
    ]


@pytest.mark.parametrize("values", sorted(VALUES_FILES))
def test_no_secret_value_is_rendered(helm: Path, values: str) -> None:
    files = [VALUES_FILES[values]] if VALUES_FILES[values] else []
    text = render_text(helm, files, CONFIG_SETS)
    docs = load_docs(text)
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert all(not d.get("data") and not d.get("stringData") for d in secrets), secrets

    checked = 0
    for doc in workloads(docs):
        for where, env in env_of(doc):
            if env["name"] not in SECRET_VARIABLES:
                continue
            checked += 1
            if "value" in env:
                # Only a reference to another variable may be spelled out, e.g. a DSN built
                # from $(POSTGRES_PASSWORD) - never a literal credential.
                assert env["name"] == "DATABASE_URL", (where, env)
                assert "$(POSTGRES_PASSWORD)" in env["value"], (where, env)
            else:
                assert "secretKeyRef" in env["valueFrom"], (where, env)
        for container in containers(doc):
            for source in container.get("envFrom") or []:
                assert "secretRef" in source or "configMapRef" in source, source
    assert checked, "no workload reads a secret variable: the check proved nothing"

    for config in (d for d in docs if d["kind"] == "ConfigMap"):
        assert not SECRET_VARIABLES & set(config.get("data") or {}), config["metadata"]
    rendered = {v for d in docs if d["kind"] == "ConfigMap" for v in (d.get("data") or {}).values()}
    assert "acme-leakcheck-org" in rendered and "claude-leakcheck-model" in rendered


@pytest.mark.parametrize(
    "key",
    [
        "config.discordBotToken",
        "config.githubToken",
        "config.anthropicApiKey",
        "config.apiTokens",
        "config.githubWebhookSecret",
        "discordBotToken",
    ],
)
def test_a_secret_given_through_set_is_refused_without_echoing_it(helm: Path, key: str) -> None:
    with pytest.raises(HelmError) as refused:
        render_text(helm, [], {key: LEAK})
    # HelmError names the command (with its --set) and then helm's own stderr: scan the latter.
    message = str(refused.value).split(" failed:\n", 1)[1]
    assert key.rsplit(".", 1)[-1] in message, message
    assert LEAK not in message
