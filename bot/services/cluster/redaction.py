"""Redaction of secrets from text that is about to be shown: pod logs, error details, summaries.

Two kinds are removed: the values the process knows (every `SecretStr` of the settings, and the
password of one that is a URL), and strings shaped like a credential even when we do not know
them (tokens, keys, JWTs, bearer credentials, `password=` pairs, URL passwords), since a pod's
log may hold any secret of the cluster. Build one `Redactor` and reuse it: it compiles once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

REDACTED = "[REDACTED]"

# A known secret shorter than this is not replaced on its own: replacing every "ab" in a log
# would destroy the log and reveal, by the gaps, what the secret is.
MIN_SECRET_LENGTH = 6

_TOKEN_SHAPES: tuple[re.Pattern[str], ...] = (
    # GitHub: classic and fine-grained personal, OAuth, user-to-server, server-to-server, refresh.
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}\b"),
    # Anthropic API and admin keys.
    re.compile(r"\bsk-ant-[A-Za-z0-9_-]{8,}"),
    # JWTs (service-account tokens among them): header.payload.signature, header starts eyJ.
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    # Discord bot tokens: base64(user id).base64(timestamp).hmac.
    re.compile(r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}"),
)

# `Authorization: Bearer xxx`: keep the scheme, drop the credential.
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]{8,}")

# key=value / key: value pairs whose key names a secret; the key stays, the value goes.
_SECRET_PAIR = re.compile(
    r"""(?ix)
    (\b[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)
     ["']?\s*[=:]\s*["']?)
    ([^\s"',;&]+)
    """
)

# scheme://user:password@host → scheme://user:[REDACTED]@host
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:)([^\s@/]+)(@)")


class Redactor:
    """Replaces known secret values and credential-shaped strings with [REDACTED]."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = set()
        for secret in secrets:
            if not secret:
                continue
            values.add(secret)
            values.update(_url_password(secret))
        known = sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)
        # Longest first, so a secret that contains another is replaced whole.
        self._known = re.compile("|".join(re.escape(value) for value in known)) if known else None

    def redact(self, text: str) -> str:
        """`text` with every secret replaced by [REDACTED]."""
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        for pattern in _TOKEN_SHAPES:
            text = pattern.sub(REDACTED, text)
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
        text = _AUTH_SCHEME.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        text = _SECRET_PAIR.sub(lambda m: m.group(1) + REDACTED, text)
        return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """One-off redaction; prefer a `Redactor` built once when redacting many texts."""
    return Redactor(secrets).redact(text)


def secret_values(settings: BaseModel) -> list[str]:
    """The value of every SecretStr field of `settings`, including those inside dicts and lists
    (CONDUCTOR_API_TOKENS is a dict of SecretStr)."""
    found: list[str] = []

    def collect(value: object) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                collect(item)

    for name in type(settings).model_fields:
        collect(getattr(settings, name))
    return [value for value in found if value]


def _url_password(value: str) -> list[str]:
    """The password of a URL-shaped secret (a DSN), which may appear on its own in a log."""
    if "://" not in value:
        return []
    try:
        password = urlsplit(value).password
    except ValueError:
        return []
    return [password] if password else []
