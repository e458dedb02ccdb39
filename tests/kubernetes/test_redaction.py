"""The redaction every log line and error detail goes through before a person sees it."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bot.services.cluster.redaction import REDACTED, Redactor, redact, secret_values
from bot.settings import load_settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token ghp_" + "a" * 36, f"token {REDACTED}"),
        ("oauth gho_" + "B1" * 18 + " end", f"oauth {REDACTED} end"),
        ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnop", f"pat {REDACTED}"),
        ("key=sk-ant-api03-abcDEF123_-xyz", f"key={REDACTED}"),
        ("sk-ant-admin01-abcdefghijkl", REDACTED),
        (
            "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789",
            REDACTED,
        ),
        ("sa eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlX2hlcmU", f"sa {REDACTED}"),
        ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: Bearer {REDACTED}"),
        ("password=hunter22&user=x", f"password={REDACTED}&user=x"),
        ('{"db_password": "hunter22", "ok": 1}', f'{{"db_password": "{REDACTED}", "ok": 1}}'),
        ("POSTGRES_PASSWORD: topsecret", f"POSTGRES_PASSWORD: {REDACTED}"),
        ("redis://user:pa55word@cache:6379/0", f"redis://user:{REDACTED}@cache:6379/0"),
        # Ordinary prose survives.
        ("rolled out 2 of 2 replicas in 31s", "rolled out 2 of 2 replicas in 31s"),
        ("the bearer of bad news", "the bearer of bad news"),
        (
            "version 1.2.3 at https://example.com/a.b.c",
            "version 1.2.3 at https://example.com/a.b.c",
        ),
    ],
)
def test_token_shapes_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_known_secret_values_are_redacted_wherever_they_appear() -> None:
    redactor = Redactor(["plain-words-secret", "postgresql://app:dbpass99@db/app", "abc"])

    assert redactor.redact("x plain-words-secret y") == f"x {REDACTED} y"
    # The password of a DSN secret is known on its own too.
    assert redactor.redact("auth failed for dbpass99") == f"auth failed for {REDACTED}"
    # Too short to redact without wrecking the text.
    assert redactor.redact("abc def") == "abc def"


def test_secret_values_come_from_every_secret_setting() -> None:
    settings = load_settings(
        {
            "DISCORD_BOT_TOKEN": "discord-secret-value",
            "POSTGRES_PASSWORD": "pg-secret-value",
            "CONDUCTOR_API_TOKENS": "dev-e=agent-token-0123456789",
            "CONDUCTOR_NAMESPACE": "not-a-secret",
        }
    )

    values = secret_values(settings)

    assert sorted(values) == [
        "agent-token-0123456789",
        "discord-secret-value",
        "pg-secret-value",
    ]
    assert isinstance(settings.discord_bot_token, SecretStr)
