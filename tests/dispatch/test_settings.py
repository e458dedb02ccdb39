"""CONDUCTOR_VALKEY_URL and CONDUCTOR_DISPATCH_DEPTH: one-line errors that never echo a value."""

from __future__ import annotations

import pytest

from bot.integrations.valkey import describe_url
from bot.settings import ConfigError, load_settings


def test_defaults_are_pull_only_with_depth_one() -> None:
    settings = load_settings({})
    assert settings.valkey_url is None and settings.dispatch_depth == 1


@pytest.mark.parametrize(
    "url", ["redis://valkey:6379/0", "rediss://:s3cret@valkey.example:6380", "redis://localhost"]
)
def test_redis_urls_are_accepted_and_kept_secret(url: str) -> None:
    settings = load_settings({"CONDUCTOR_VALKEY_URL": url, "VALKEY_PASSWORD": "pw"})
    assert settings.valkey_url is not None
    assert settings.valkey_url.get_secret_value() == url
    assert "s3cret" not in repr(settings) and "s3cret" not in describe_url(url)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CONDUCTOR_VALKEY_URL": "http://:s3cret@valkey:6379"},
            "configuration error: CONDUCTOR_VALKEY_URL: expected a redis:// or rediss:// URL",
        ),
        (
            {"CONDUCTOR_VALKEY_URL": "redis://:s3cret@valkey:port"},
            "configuration error: CONDUCTOR_VALKEY_URL: the port is not a number",
        ),
        ({"CONDUCTOR_DISPATCH_DEPTH": "0"}, "configuration error: CONDUCTOR_DISPATCH_DEPTH:"),
    ],
)
def test_bad_settings_stop_with_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text and "s3cret" not in text
