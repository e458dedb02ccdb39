"""Conductor-E's configuration, read once from the environment by the composition root.

Every field is named after its environment variable (the alias). Secrets keep the key names of
the `conductor-e-secrets` Kubernetes secret; everything else is `CONDUCTOR_*`. Secrets are
`SecretStr` so that neither a log line nor a repr can show them.

Nothing here is built at import time: `load_settings()` is called by `bot.__main__` only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.services.costs.pricing import PriceFile, PriceFileError, load_price_file

Priority = Literal["critical", "high", "normal"]

DEFAULT_PRIORITY_LABELS: dict[str, Priority] = {
    "priority:critical": "critical",
    "p0": "critical",
    "critical": "critical",
    "priority:high": "high",
    "high-priority": "high",
    "p1": "high",
}

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_AGENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_ROUTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,39}$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line that names it."""


def _split_list(value: Any) -> Any:
    """`a, b,c` → ["a", "b", "c"]; empty → []. Lists pass through as they are."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_pairs(value: Any, what: str) -> Any:
    """`k=v, k2=v2` → {"k": "v", "k2": "v2"}."""
    if value is None:
        return {}
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for part in _split_list(value):
            key, sep, val = part.partition("=")
            if not sep or not key.strip() or not val.strip():
                raise ValueError(f"expected comma-separated {what} pairs like key=value")
            pairs[key.strip()] = val.strip()
        return pairs
    return value


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("conductor-e", appauthor=False))


class Settings(BaseSettings):
    """All of Conductor-E's settings. Construct with `load_settings()`."""

    model_config = SettingsConfigDict(
        populate_by_name=True,
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):  # type: ignore[no-untyped-def]
        # load_settings() hands over the environment itself, so a test's dict is all there is.
        return (init_settings,)

    # --- secrets (names of the conductor-e-secrets keys) -----------------------------------
    discord_bot_token: SecretStr | None = Field(None, alias="DISCORD_BOT_TOKEN")
    anthropic_api_key: SecretStr | None = Field(None, alias="ANTHROPIC_API_KEY")
    anthropic_admin_key: SecretStr | None = Field(None, alias="ANTHROPIC_ADMIN_KEY")
    github_token: SecretStr | None = Field(None, alias="GITHUB_TOKEN")
    postgres_password: SecretStr | None = Field(None, alias="POSTGRES_PASSWORD")
    discord_webhook_url: SecretStr | None = Field(None, alias="DISCORD_WEBHOOK_URL")
    database_url: SecretStr | None = Field(
        None,
        alias="DATABASE_URL",
        description="PostgreSQL DSN; empty means the embedded PostgreSQL under the data dir.",
    )

    # --- the HTTP API ------------------------------------------------------------------------
    http_host: str = Field("0.0.0.0", alias="CONDUCTOR_HTTP_HOST")
    http_port: int = Field(8080, alias="CONDUCTOR_HTTP_PORT", ge=1, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir, alias="CONDUCTOR_DATA_DIR")
    api_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        alias="CONDUCTOR_API_TOKENS",
        description="agent=token pairs; when set, writes need `Authorization: Bearer <token>`.",
    )
    steer_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict,
        alias="CONDUCTOR_STEER_TOKENS",
        description="name=token pairs for the steering API (hold, requeue, pause...); unset: "
        "those routes answer 403.",
    )
    heartbeat_interval_seconds: float = Field(
        60.0, alias="CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS", gt=0
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", alias="CONDUCTOR_LOG_LEVEL"
    )
    dashboard_token: SecretStr | None = Field(
        None,
        alias="CONDUCTOR_DASHBOARD_TOKEN",
        description="When set, the dashboard and its data need this token.",
    )
    db_pool_size: int = Field(10, alias="CONDUCTOR_DB_POOL_SIZE", ge=1, le=200)

    # --- GitHub ------------------------------------------------------------------------------
    github_api_url: str = Field("https://api.github.com", alias="CONDUCTOR_GITHUB_API_URL")
    github_webhook_secret: SecretStr | None = Field(None, alias="CONDUCTOR_GITHUB_WEBHOOK_SECRET")
    managed_repos: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="CONDUCTOR_MANAGED_REPOS"
    )
    github_org: str | None = Field(None, alias="CONDUCTOR_GITHUB_ORG")
    agent_ready_label: str = Field("agent-ready", alias="CONDUCTOR_AGENT_READY_LABEL", min_length=1)
    priority_labels: Annotated[dict[str, Priority], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITY_LABELS),
        alias="CONDUCTOR_PRIORITY_LABELS",
        description="label=priority pairs (critical, high, normal), case-insensitive.",
    )
    hold_label: str = Field("hold", alias="CONDUCTOR_HOLD_LABEL", min_length=1, max_length=100)

    # --- the merge gate ----------------------------------------------------------------------
    merge_repos: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        alias="CONDUCTOR_MERGE_REPOS",
        description="Repos whose PRs the merge gate may merge (owner/repo list, or * for every "
        "managed repo); empty: the gate merges nothing.",
    )
    merge_method: Literal["squash", "merge", "rebase"] = Field(
        "squash", alias="CONDUCTOR_MERGE_METHOD"
    )
    merge_dry_run: bool = Field(
        False,
        alias="CONDUCTOR_MERGE_DRY_RUN",
        description="Decide and report, never merge.",
    )
    merge_blocking_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["do-not-merge", "hold"],
        alias="CONDUCTOR_MERGE_BLOCKING_LABELS",
    )
    merge_required_checks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        alias="CONDUCTOR_MERGE_REQUIRED_CHECKS",
        description="Check or status names that must be present and green (all present ones "
        "must be green anyway).",
    )

    # --- routing -----------------------------------------------------------------------------
    agent_routes: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(
        default_factory=dict,
        alias="CONDUCTOR_AGENT_ROUTES",
        description="route=agent|agent pairs overriding the convention dev-e-{stack}, e.g. "
        "python=dev-e-python,node=dev-e-node|dev-e-node-2 (routes: stacks, ios-macos, review).",
    )
    default_stack: str | None = Field(
        None,
        alias="CONDUCTOR_DEFAULT_STACK",
        description="The stack of repos without a .rig-agent.yaml; unset: any agent takes them.",
    )

    # --- Discord -----------------------------------------------------------------------------
    # Push dispatch to the agents' Valkey streams (off without a URL); the password comes from
    # the URL or VALKEY_PASSWORD (the secret's key).
    valkey_url: SecretStr | None = Field(None, alias="CONDUCTOR_VALKEY_URL")
    valkey_password: SecretStr | None = Field(None, alias="VALKEY_PASSWORD")
    dispatch_depth: int = Field(1, alias="CONDUCTOR_DISPATCH_DEPTH", ge=1, le=100)
    discord_api_url: str = Field("https://discord.com/api/v10", alias="CONDUCTOR_DISCORD_API_URL")
    guild_id: int | None = Field(None, alias="CONDUCTOR_GUILD_ID")
    admin_role_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, alias="CONDUCTOR_ADMIN_ROLE_IDS"
    )
    admin_user_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, alias="CONDUCTOR_ADMIN_USER_IDS"
    )
    # Who may steer the work (/issue hold, /agent pause...); admins may too.
    steer_role_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, alias="CONDUCTOR_STEER_ROLE_IDS"
    )
    steer_user_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, alias="CONDUCTOR_STEER_USER_IDS"
    )
    tasks_channel_id: int | None = Field(None, alias="CONDUCTOR_TASKS_CHANNEL_ID")
    admin_channel_id: int | None = Field(None, alias="CONDUCTOR_ADMIN_CHANNEL_ID")
    audit_channel_id: int | None = Field(None, alias="CONDUCTOR_AUDIT_CHANNEL_ID")
    issue_threads: bool = Field(
        False,
        alias="CONDUCTOR_ISSUE_THREADS",
        description="Open a thread under each assignment alert in #tasks.",
    )

    # --- the coordination loop ---------------------------------------------------------------
    loop_enabled: bool = Field(True, alias="CONDUCTOR_LOOP_ENABLED")
    loop_interval_seconds: float = Field(300.0, alias="CONDUCTOR_LOOP_INTERVAL_SECONDS", gt=0)
    # The longest wait between two attempts to reach an upstream that is down (Discord for the
    # bot, GitHub and Anthropic for the loop); the waits double up to it, with jitter.
    retry_max_seconds: float = Field(
        60.0, alias="CONDUCTOR_RETRY_MAX_SECONDS", gt=0, le=3600, allow_inf_nan=False
    )
    summary_model: str = Field("claude-haiku-4-5", alias="CONDUCTOR_SUMMARY_MODEL", min_length=1)
    anthropic_base_url: str | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_BASE_URL", "anthropic_base_url")
    )
    stuck_in_progress_minutes: float = Field(
        30.0, alias="CONDUCTOR_STUCK_IN_PROGRESS_MINUTES", gt=0
    )
    stuck_in_review_minutes: float = Field(20.0, alias="CONDUCTOR_STUCK_IN_REVIEW_MINUTES", gt=0)
    max_attempts: int = Field(2, alias="CONDUCTOR_MAX_ATTEMPTS", ge=1)

    # --- Kubernetes --------------------------------------------------------------------------
    kubeconfig: Path | None = Field(None, alias="CONDUCTOR_KUBECONFIG")
    kube_context: str | None = Field(None, alias="CONDUCTOR_KUBE_CONTEXT")
    namespace: str = Field("conductor-e", alias="CONDUCTOR_NAMESPACE", min_length=1)
    confirm_timeout_seconds: float = Field(60.0, alias="CONDUCTOR_CONFIRM_TIMEOUT_SECONDS", gt=0)
    rollout_timeout_seconds: float = Field(300.0, alias="CONDUCTOR_ROLLOUT_TIMEOUT_SECONDS", gt=0)
    rollout_targets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="CONDUCTOR_ROLLOUT_TARGETS"
    )
    flux_objects: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        alias="CONDUCTOR_FLUX_OBJECTS",
        description="kind/name entries, e.g. kustomization/conductor-e,helmrelease/conductor-e",
    )

    # --- costs -------------------------------------------------------------------------------
    agent_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, alias="CONDUCTOR_AGENT_KEYS"
    )
    agent_budgets_usd: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, alias="CONDUCTOR_AGENT_BUDGETS_USD"
    )
    prices_file: Path | None = Field(
        None,
        alias="CONDUCTOR_PRICES_FILE",
        description="A YAML or JSON file of model prices that adds to or overrides genai-prices.",
    )
    _price_overrides: PriceFile | None = PrivateAttr(None)

    # --- validators --------------------------------------------------------------------------
    @field_validator(
        "managed_repos",
        "merge_repos",
        "merge_blocking_labels",
        "merge_required_checks",
        "admin_role_ids",
        "admin_user_ids",
        "steer_role_ids",
        "steer_user_ids",
        "rollout_targets",
        "flux_objects",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator(
        "api_tokens",
        "steer_tokens",
        "priority_labels",
        "agent_keys",
        "agent_budgets_usd",
        mode="before",
    )
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        return _split_pairs(value, "name=value")

    @field_validator("agent_routes", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> Any:
        pairs = _split_pairs(value, "route=agent|agent")
        if not isinstance(pairs, dict):
            return pairs
        routes: dict[str, tuple[str, ...]] = {}
        for route, agents in pairs.items():
            if not _ROUTE.match(str(route)):
                raise ValueError(f"route {str(route)[:40]!r} is not a stack name like python")
            names = agents.split("|") if isinstance(agents, str) else list(agents)
            names = [name.strip() for name in names if name.strip()]
            if not names:
                raise ValueError(f"route {route!r} names no agent")
            for name in names:
                if not _AGENT_ID.match(name):
                    raise ValueError(f"route {route!r}: {name[:70]!r} is not a valid agent id")
            routes[str(route).lower()] = tuple(names)
        return routes

    @field_validator("default_stack", mode="before")
    @classmethod
    def _stack(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not _ROUTE.match(value):
            raise ValueError("expected a stack name like python")
        return value.lower()

    @field_validator("managed_repos")
    @classmethod
    def _repos(cls, value: list[str]) -> list[str]:
        for repo in value:
            if not _REPO.match(repo):
                raise ValueError(f"expected owner/repo entries, got {repo!r}")
        return value

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for agent, token in value.items():
            if not _AGENT_ID.match(agent):
                raise ValueError(f"agent id {agent!r} is not a valid agent id")
            if len(token.get_secret_value()) < 16:
                raise ValueError(f"the token for {agent!r} is shorter than 16 characters")
        return value

    @field_validator("steer_tokens")
    @classmethod
    def _steer_tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, token in value.items():
            if not _AGENT_ID.match(name):
                raise ValueError(f"steer token name {name[:70]!r} is not a valid name")
            if len(token.get_secret_value()) < 16:
                raise ValueError(f"the steer token {name!r} is shorter than 16 characters")
        return value

    @field_validator("merge_repos")
    @classmethod
    def _merge_repos(cls, value: list[str]) -> list[str]:
        for repo in value:
            if repo != "*" and not _REPO.match(repo):
                raise ValueError(f"expected owner/repo entries or *, got {repo!r}")
        return value

    @field_validator("priority_labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return {label.lower(): priority for label, priority in value.items()}

    @field_validator("github_api_url", "discord_api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("flux_objects")
    @classmethod
    def _flux(cls, value: list[str]) -> list[str]:
        kinds = {"kustomization", "helmrelease", "gitrepository"}
        for entry in value:
            kind, sep, name = entry.partition("/")
            if not sep or kind.lower() not in kinds or not name:
                raise ValueError(
                    f"expected kind/name with kind one of {sorted(kinds)}, got {entry!r}"
                )
        return value

    @field_validator("dashboard_token")
    @classmethod
    def _dashboard_token(cls, value: SecretStr | None) -> SecretStr | None:
        # Guessable tokens are what the login throttle cannot make safe.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("the dashboard token is shorter than 16 characters")
        return value

    @field_validator(
        "discord_bot_token",
        "anthropic_api_key",
        "anthropic_admin_key",
        "github_token",
        "postgres_password",
        "discord_webhook_url",
        "database_url",
        "github_webhook_secret",
        "dashboard_token",
        "valkey_url",
        "valkey_password",
        mode="before",
    )
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        # Kubernetes renders an optional secret key that is absent as an empty variable.
        return None if value == "" else value

    @field_validator(
        "guild_id",
        "tasks_channel_id",
        "admin_channel_id",
        "audit_channel_id",
        "kubeconfig",
        "kube_context",
        "github_org",
        "anthropic_base_url",
        "prices_file",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _load_prices_file(self) -> Settings:
        # Read and checked once, at start-up: a bad file stops it with one line naming it.
        if self.prices_file is not None:
            try:
                self._price_overrides = load_price_file(self.prices_file)
            except PriceFileError as exc:
                raise ValueError(f"CONDUCTOR_PRICES_FILE: {exc}") from None
        return self

    @property
    def price_overrides(self) -> PriceFile | None:
        """The models and prices of CONDUCTOR_PRICES_FILE, validated (None without one)."""
        return self._price_overrides

    @field_validator("valkey_url")
    @classmethod
    def _valkey_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        url = urlsplit(value.get_secret_value())
        try:
            url.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("the port is not a number") from None
        if url.scheme not in ("redis", "rediss") or not url.hostname:
            raise ValueError("expected a redis:// or rediss:// URL with a host")
        return value

    @model_validator(mode="after")
    def _database_url_scheme(self) -> Settings:
        if self.database_url is not None:
            dsn = self.database_url.get_secret_value()
            if not dsn.startswith(("postgresql://", "postgres://")):
                raise ValueError(
                    "DATABASE_URL: expected a postgresql:// URL (or empty for the embedded server)"
                )
        return self


def _describe(error: Mapping[str, Any]) -> str:
    name = ".".join(str(part) for part in error.get("loc", ()) if not isinstance(part, int))
    message = str(error.get("msg", "is invalid"))
    message = message.removeprefix("Value error, ")
    if not name:
        return message
    return f"{name}: {message}"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from `environ` (default: the process environment).

    Raises ConfigError with one line naming the first bad setting; the value itself is never
    echoed, since it may be a secret.
    """
    env = dict(os.environ if environ is None else environ)
    known = {(field.alias or name).upper() for name, field in Settings.model_fields.items()} | {
        "ANTHROPIC_BASE_URL"
    }
    values = {key: value for key, value in env.items() if key.upper() in known}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError("configuration error: " + _describe(exc.errors()[0])) from None
