"""Each managed repo's `.rig-agent.yaml`: read, validated, and recorded when it changes.

The file is the agent runtime's own (`Stig-Johnny/automate-e`), and it decides where a repo's
issues are routed and whether the merge gate may merge there, so Conductor-E follows it: on
first sight of a repo, on a push that touches it, and in every coordination run. Re-reads are
conditional, so an unchanged file costs nothing against the rate limit; a broken file is
recorded with its reason and the repo keeps its last good configuration (README, "Routing").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bot.context import AppContext
from bot.integrations.github import RepoFile
from bot.services.work.routing import route_key
from store import catalogue
from store.events import NewEvent
from store.projections import RepoConfig

log = logging.getLogger(__name__)

CONFIG_PATH = ".rig-agent.yaml"
MAX_BYTES = 64 * 1024
# GitHub's 404 carries no ETag, so re-reading a repo without the file would cost a counted
# request every run; the loop re-reads it this rarely (a push adding the file is seen at once).
ABSENT_RECHECK_SECONDS = 3600.0
CONCURRENCY = 16
METADATA = {"actor": "conductor-e", "source": "repo-config"}


class FileReader(Protocol):
    """What this service needs of GitHub (bot.integrations.github.GitHubClient)."""

    async def get_file(self, repo: str, path: str) -> RepoFile | None: ...


def _names(value: Any) -> Any:
    """`a, b` or a YAML list → a list of names; None → []."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _switch(value: Any) -> Any:
    # YAML 1.1 (PyYAML) reads a bare on/off as a boolean.
    if isinstance(value, bool):
        return "on" if value else "off"
    return value.lower() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Name = Annotated[str, Field(min_length=1, max_length=100)]
Command = Annotated[str, Field(min_length=1, max_length=1_000)]


class RigAgentConfig(BaseModel):
    """`.rig-agent.yaml` as the runtime reads it; other keys are ignored, not refused."""

    model_config = ConfigDict(extra="ignore")

    stack: Annotated[str, BeforeValidator(_lower), Field(pattern=r"^[a-z0-9][a-z0-9_.+-]{0,39}$")]
    tools: Annotated[list[Name], BeforeValidator(_names), Field(max_length=50)] = []
    testCommand: Command | None = None
    buildCommand: Command | None = None
    escalate: Annotated[list[Name], BeforeValidator(_names), Field(max_length=20)] = []
    # Absent unless the file says it: only an explicit `merge: off` overrides CONDUCTOR_MERGE_REPOS.
    merge: Annotated[Literal["on", "off"], BeforeValidator(_switch)] | None = None


class ConfigInvalid(Exception):
    """The file cannot be used; the message says why in one line."""


def parse_config(content: bytes) -> dict[str, Any]:
    """The validated configuration of a `.rig-agent.yaml`, or ConfigInvalid saying why."""
    if len(content) > MAX_BYTES:
        raise ConfigInvalid(f"the file is over {MAX_BYTES // 1024} KiB")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigInvalid("the file is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigInvalid(f"not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigInvalid("expected a mapping of settings such as 'stack: python'")
    try:
        config = RigAgentConfig.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        name = ".".join(str(part) for part in error.get("loc", ())) or "file"
        raise ConfigInvalid(f"field {name!r}: {error['msg']}") from None
    return config.model_dump(mode="json", exclude_none=True)


@dataclass
class RefreshResult:
    """What one round of reads found; the lists hold repo names."""

    read: int = 0  # files asked for
    changed: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    unchanged: int = 0
    skipped: int = 0  # known to have no file, re-read later
    errors: list[str] = field(default_factory=list)


class RepoConfigService:
    """Reads repos' `.rig-agent.yaml` and records what changed."""

    def __init__(
        self,
        context: AppContext,
        github: FileReader,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.context = context
        self.github = github
        self._clock = clock
        self._absent_checked: dict[str, float] = {}  # repo → when a 404 was last seen

    async def ensure(self, repos: Iterable[str]) -> RefreshResult:
        """Read the configuration of the repos never read before (first seen)."""
        wanted = {repo.lower(): repo for repo in repos}
        known = await self.context.projections.repo_configs(list(wanted))
        for config in known:
            wanted.pop(config.repo, None)
        return await self.refresh(wanted.values(), force=True)

    async def refresh(self, repos: Iterable[str], *, force: bool = False) -> RefreshResult:
        """Re-read the repos' files and record changes. Never raises for one repo's failure.

        A repo known to have no file is skipped until ABSENT_RECHECK_SECONDS have passed since
        its last read, unless `force` (a push touched the file, or the repo is new).
        """
        unique = {repo.lower(): repo for repo in repos}
        result = RefreshResult()
        if not unique:
            return result
        current = {c.repo: c for c in await self.context.projections.repo_configs(list(unique))}
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(key: str, repo: str) -> None:
            known = current.get(key)
            if not force and self._absent_recently(key, known):
                result.skipped += 1
                return
            async with limit:
                await self._refresh_one(repo, known, result)

        await asyncio.gather(*(one(key, repo) for key, repo in unique.items()))
        if result.changed or result.invalid or result.errors:
            log.info(
                "repo config: %d read, %d changed, %d invalid, %d errors",
                result.read,
                len(result.changed),
                len(result.invalid),
                len(result.errors),
            )
        return result

    def _absent_recently(self, key: str, known: RepoConfig | None) -> bool:
        if known is not None and (known.present or known.error is not None):
            return False
        checked = self._absent_checked.get(key)
        return checked is not None and self._clock() - checked < ABSENT_RECHECK_SECONDS

    async def _refresh_one(
        self, repo: str, known: RepoConfig | None, result: RefreshResult
    ) -> None:
        result.read += 1
        try:
            found = await self.github.get_file(repo, CONFIG_PATH)
        except Exception as exc:
            message = getattr(exc, "message", None) or type(exc).__name__
            result.errors.append(f"{repo}: {message}")
            return
        key = repo.lower()
        if found is None:
            self._absent_checked[key] = self._clock()
            if known is None or (not known.present and known.error is None):
                # No file, as before (or never read): the default route, nothing to record.
                result.unchanged += 1
                return
            await self._record(repo, known, "REPO_CONFIG_CHANGED", {"present": False}, result)
            return
        self._absent_checked.pop(key, None)
        if known is not None and (
            (known.present and known.sha == found.sha and known.error is None)
            or known.error_sha == found.sha
        ):
            result.unchanged += 1
            return
        try:
            config = parse_config(found.content)
        except ConfigInvalid as exc:
            invalid = {"sha": found.sha, "error": str(exc)[:1_000]}
            await self._record(repo, known, "REPO_CONFIG_INVALID", invalid, result)
            return
        payload: dict[str, Any] = {
            "present": True,
            "sha": found.sha,
            "config": config,
            "routeKey": route_key(config),
        }
        await self._record(repo, known, "REPO_CONFIG_CHANGED", payload, result)

    async def _record(
        self,
        repo: str,
        known: RepoConfig | None,
        event_type: str,
        payload: dict[str, Any],
        result: RefreshResult,
    ) -> None:
        name = known.repo_name if known is not None else repo
        data = catalogue.validate(event_type, {"repo": name, **payload}, internal=True)
        # The repo, the file's sha and the projection row it was judged against: two readers
        # racing record one change.
        basis = known.position if known is not None else 0
        key = f"repo-config:{name.lower()}:{payload.get('sha') or 'absent'}:{basis}"
        stored = await self.context.store.append(
            catalogue.repo_stream(name),
            [NewEvent(event_type, data, dict(METADATA))],
            idempotency_key=key,
        )
        if stored.duplicate:
            result.unchanged += 1
        elif event_type == "REPO_CONFIG_INVALID":
            result.invalid.append(name)
            log.warning("repo config: %s/%s is broken: %s", name, CONFIG_PATH, payload["error"])
        else:
            result.changed.append(name)
