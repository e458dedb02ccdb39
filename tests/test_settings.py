"""Settings: names as documented, one clear line per bad value, secrets never shown."""

from __future__ import annotations

import pytest

from bot.settings import ConfigError, load_settings


def test_defaults_on_an_empty_environment() -> None:
    settings = load_settings({})
    assert settings.http_port == 8080
    assert settings.database_url is None
    assert settings.github_api_url == "https://api.github.com"
    assert settings.discord_api_url == "https://discord.com/api/v10"
    assert settings.agent_ready_label == "agent-ready"
    assert settings.priority_labels["p0"] == "critical"
    assert settings.namespace == "conductor-e"


def test_lists_and_pairs_are_comma_separated() -> None:
    settings = load_settings(
        {
            "CONDUCTOR_MANAGED_REPOS": "acme/app, acme/api",
            "CONDUCTOR_ADMIN_ROLE_IDS": "1,2",
            "CONDUCTOR_PRIORITY_LABELS": "Urgent=critical,nice=normal",
            "CONDUCTOR_API_TOKENS": "dev-e-1=0123456789abcdef",
            "CONDUCTOR_FLUX_OBJECTS": "kustomization/conductor-e,helmrelease/conductor-e",
        }
    )
    assert settings.managed_repos == ["acme/app", "acme/api"]
    assert settings.admin_role_ids == [1, 2]
    assert settings.priority_labels == {"urgent": "critical", "nice": "normal"}
    assert settings.api_tokens["dev-e-1"].get_secret_value() == "0123456789abcdef"


def test_empty_secret_variables_mean_unset() -> None:
    settings = load_settings({"DATABASE_URL": "", "DISCORD_BOT_TOKEN": ""})
    assert settings.database_url is None
    assert settings.discord_bot_token is None


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CONDUCTOR_HTTP_PORT": "70000"}, "CONDUCTOR_HTTP_PORT"),
        ({"CONDUCTOR_GUILD_ID": "general"}, "CONDUCTOR_GUILD_ID"),
        ({"CONDUCTOR_GITHUB_API_URL": "ftp://x"}, "CONDUCTOR_GITHUB_API_URL"),
        ({"CONDUCTOR_FLUX_OBJECTS": "deployment/x"}, "CONDUCTOR_FLUX_OBJECTS"),
        ({"CONDUCTOR_PRIORITY_LABELS": "p0"}, "CONDUCTOR_PRIORITY_LABELS"),
        ({"CONDUCTOR_LOG_LEVEL": "LOUD"}, "CONDUCTOR_LOG_LEVEL"),
        ({"CONDUCTOR_LOOP_INTERVAL_SECONDS": "-5"}, "CONDUCTOR_LOOP_INTERVAL_SECONDS"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    message = str(raised.value)
    assert names in message
    assert "\n" not in message


def test_secret_values_never_show() -> None:
    settings = load_settings(
        {
            "DISCORD_BOT_TOKEN": "discord-secret-value",
            "DATABASE_URL": "postgresql://u:pw-secret@h/d",
        }
    )
    assert "discord-secret-value" not in repr(settings)
    assert "pw-secret" not in repr(settings)
    with pytest.raises(ConfigError) as raised:
        load_settings({"DATABASE_URL": "mysql://u:pw-secret@h/d"})
    assert "pw-secret" not in str(raised.value)


def test_the_readme_documents_every_setting() -> None:
    from pathlib import Path

    from bot.settings import Settings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    names = {field.alias or name.upper() for name, field in Settings.model_fields.items()}
    names.add("ANTHROPIC_BASE_URL")
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert missing == []


def test_a_prices_file_is_read_at_start_up(tmp_path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        "models:\n"
        "  - model: claude-next-5\n"
        "    prices:\n"
        "      - {effective: 2026-11-01, input: 4, output: 20, cache_write_5m: 5,\n"
        "         cache_write_1h: 8, cache_read: 0.4}\n"
    )
    settings = load_settings({"CONDUCTOR_PRICES_FILE": str(path)})
    assert settings.prices_file == path
    assert settings.price_overrides is not None
    assert settings.price_overrides.models[0].model == "claude-next-5"
    assert load_settings({"CONDUCTOR_PRICES_FILE": ""}).price_overrides is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read"), ("models: [", "not valid YAML/JSON"), ("models: []", "at least 1")],
)
def test_a_bad_prices_file_stops_start_up_in_one_line(
    tmp_path, content: str | None, reason: str
) -> None:
    path = tmp_path / "prices.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as raised:
        load_settings({"CONDUCTOR_PRICES_FILE": str(path)})
    message = str(raised.value)
    assert message.startswith("configuration error: CONDUCTOR_PRICES_FILE: ")
    assert reason in message and str(path) in message
    assert "\n" not in message


@pytest.mark.parametrize("value", ["inf", "nan", "0", "3601"])
def test_the_retry_cap_is_a_finite_number_of_seconds_up_to_an_hour(value: str) -> None:
    with pytest.raises(ConfigError, match="CONDUCTOR_RETRY_MAX_SECONDS"):
        load_settings({"CONDUCTOR_RETRY_MAX_SECONDS": value})
