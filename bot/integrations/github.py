"""GitHub through gidgethub: find the agent-ready issues of the managed repos, fetch one issue,
read a file, and what the merge gate needs (a PR, its reviews, its head's check runs and combined
status, and the sha-guarded merge, whose refusal comes back as a `MergeResult`).

One `GitHubClient` per process: it wraps `gidgethub.aiohttp.GitHubAPI` over the process's one
`aiohttp.ClientSession` (never its own) and keeps gidgethub's ETag cache for its lifetime, so an
unchanged search costs conditional requests only (GitHub answers 304, which does not count
against the primary rate limit).

Search limits implemented (GitHub docs, "Troubleshooting search queries" / REST search):

* a query (`q`, qualifiers included) is at most 256 characters — counting the qualifiers is the
  conservative reading of the docs, which some pages phrase as "not including qualifiers";
* no explicit AND/OR/NOT operators are used (the limit is five); several `repo:` qualifiers are
  ORed implicitly. Should GitHub refuse a combined query anyway (422), the group is split in
  halves and retried, which also isolates a repo that does not exist or cannot be read;
* a search returns at most 1,000 results: a group whose `total_count` is over 1,000 is split;
  a single repo over 1,000 is listed through `GET /repos/{owner}/{repo}/issues` instead.

Retries: 5xx and transport errors (timeouts, refused connections) are retried a bounded number
of times with exponential backoff; 403/429 secondary rate limits wait for `Retry-After`, or for
`X-RateLimit-Reset` when `X-RateLimit-Remaining` is 0, or a minute otherwise — never longer
than `RetryPolicy.max_wait`. A search that GitHub reports as `incomplete_results`, or that
failed, marks the report incomplete with a reason, per query: the caller can tell which repos
were fully seen (`SearchReport.complete_for`).

The token is sent as `Authorization: token …` and never appears in a log line or an error.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from gidgethub import GitHubBroken, HTTPException, InvalidField, ValidationError
from gidgethub import aiohttp as gh_aiohttp

from bot.backoff import exponential
from bot.errors import NotFound, Unavailable, UpstreamError
from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_QUERY_LENGTH = 256
SEARCH_RESULT_CAP = 1000
PER_PAGE = 100
API_VERSION = "2022-11-28"
REQUESTER = "conductor-e"

Sleep = Callable[[float], Awaitable[None]]


# --- errors ---------------------------------------------------------------------------------------


class GitHubError(UpstreamError):
    """GitHub refused or failed a request; the message says which and why (never the token)."""


class GitHubUnavailable(Unavailable):
    """GitHub could not be reached, or kept failing, after the retries."""


class GitHubUnauthorized(GitHubError):
    """GitHub rejected GITHUB_TOKEN (401): retrying cannot help until the token is fixed."""


class GitHubRateLimited(GitHubError):
    """GitHub asked us to wait longer than we are willing to."""


class GitHubNotFound(NotFound):
    """The repository or issue does not exist (or the token cannot see it)."""


def _unauthorized(exc: HTTPException) -> GitHubUnauthorized:
    detail = str(exc) or exc.status_code.phrase
    return GitHubUnauthorized(f"GitHub rejected GITHUB_TOKEN: 401 {detail}")


# --- our own dataclasses --------------------------------------------------------------------------


@dataclass(frozen=True)
class GitHubIssue:
    repo: str  # owner/name as GitHub spells it
    number: int
    title: str
    url: str  # the html_url
    labels: tuple[str, ...]
    state: str  # "open" | "closed"
    node_id: str
    updated_at: datetime | None
    is_pull_request: bool = False
    state_reason: str | None = None

    def has_label(self, label: str) -> bool:
        wanted = label.lower()
        return any(name.lower() == wanted for name in self.labels)


@dataclass(frozen=True)
class RepoFile:
    """A file's bytes on a repo's default branch, from the contents API."""

    repo: str
    path: str
    sha: str  # the blob sha: changes exactly when the content does
    content: bytes


@dataclass(frozen=True)
class RateLimitInfo:
    resource: str  # "core", "search", ...
    limit: int
    remaining: int
    used: int | None
    reset_at: datetime


@dataclass(frozen=True)
class SearchQuery:
    """One search: either a group of `repo:` qualifiers or one `org:` qualifier."""

    repos: tuple[str, ...] = ()
    org: str | None = None

    def q(self, label: str) -> str:
        terms = [f"org:{self.org}"] if self.org else [f"repo:{repo}" for repo in self.repos]
        return " ".join([*terms, f'label:"{label}"', "is:issue", "is:open"])

    def describe(self) -> str:
        if self.org:
            return f"org:{self.org}"
        if len(self.repos) == 1:
            return self.repos[0]
        return f"{len(self.repos)} repos ({self.repos[0]} … {self.repos[-1]})"


@dataclass(frozen=True)
class SearchScope:
    """Which repos the search covers: listed repos, and every repo of the org."""

    repos: frozenset[str]  # lower-cased owner/name
    org: str | None  # lower-cased

    def covers(self, repo: str) -> bool:
        repo = repo.lower()
        return repo in self.repos or (self.org is not None and repo.split("/")[0] == self.org)


@dataclass
class SearchReport:
    """What one search across the managed repos found, and how sure it is."""

    scope: SearchScope
    issues: list[GitHubIssue] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    requests_made: int = 0
    not_modified: int = 0  # 304 answers: free against the rate limit
    reasons: list[str] = field(default_factory=list)
    rate_limits: dict[str, RateLimitInfo] = field(default_factory=dict)
    # Repos / org whose query did not complete: nothing may be concluded from their absence.
    incomplete_repos: set[str] = field(default_factory=set)
    incomplete_org: bool = False
    # Why GitHub counts as down for this search (the error class), or that it refused the token.
    unavailable: str | None = None
    unauthorized: bool = False

    @property
    def incomplete(self) -> bool:
        return bool(self.reasons)

    @property
    def rate_limit_remaining(self) -> int | None:
        """Search requests left in the current window, as GitHub last reported."""
        info = self.rate_limits.get("search")
        return info.remaining if info else None

    def complete_for(self, repo: str) -> bool:
        """True when `repo` is in scope and its query finished with complete results."""
        if not self.scope.covers(repo):
            return False
        lowered = repo.lower()
        if lowered in self.scope.repos:
            return lowered not in self.incomplete_repos
        return not self.incomplete_org

    def _mark_incomplete(self, query: SearchQuery, reason: str) -> None:
        self.reasons.append(reason)
        if query.org:
            self.incomplete_org = True
        self.incomplete_repos.update(repo.lower() for repo in query.repos)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3  # retries after the first attempt, for 5xx, timeouts, rate limits
    backoff_base: float = 1.0  # seconds; doubled per attempt
    backoff_max: float = 30.0
    max_wait: float = 120.0  # the longest rate-limit wait we accept before giving up
    secondary_default_wait: float = 60.0  # GitHub: "wait for at least one minute"
    request_timeout: float = 30.0

    def backoff(self, attempt: int) -> float:
        return exponential(attempt - 1, base=self.backoff_base, cap=self.backoff_max)


# --- planning -------------------------------------------------------------------------------------


def search_scope(settings: Settings) -> SearchScope:
    return SearchScope(
        repos=frozenset(repo.lower() for repo in settings.managed_repos),
        org=settings.github_org.lower() if settings.github_org else None,
    )


def plan_queries(
    repos: Sequence[str],
    org: str | None,
    label: str,
    *,
    max_length: int = MAX_QUERY_LENGTH,
    alone: frozenset[str] = frozenset(),
) -> list[SearchQuery]:
    """Pack the repos into as few searches as fit in `max_length` characters each.

    Repos of `org` are covered by its `org:` query and not listed again. Repos in `alone` get a
    query of their own (GitHub refused them before: they must not sink a whole group).
    """
    if '"' in label:
        raise ValueError(f"label {label!r} contains a double quote and cannot be searched")
    queries: list[SearchQuery] = [SearchQuery(org=org)] if org else []
    lowered_org = org.lower() if org else None
    listed = sorted(
        {
            repo
            for repo in repos
            if lowered_org is None or repo.split("/")[0].lower() != lowered_org
        },
        key=str.lower,
    )
    group: list[str] = []
    for repo in listed:
        if repo.lower() in alone:
            queries.append(SearchQuery(repos=(repo,)))
            continue
        candidate = SearchQuery(repos=(*group, repo))
        if group and len(candidate.q(label)) > max_length:
            queries.append(SearchQuery(repos=tuple(group)))
            group = [repo]
        else:
            group.append(repo)
    if group:
        queries.append(SearchQuery(repos=tuple(group)))
    return queries


# --- parsing GitHub's shapes ----------------------------------------------------------------------


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def repo_of(item: Mapping[str, Any]) -> str:
    """owner/name of an issue item, from `repository_url` (search, issues API) or `repository`."""
    repository = item.get("repository")
    if isinstance(repository, Mapping) and repository.get("full_name"):
        return str(repository["full_name"])
    path = urlsplit(str(item.get("repository_url", ""))).path.rstrip("/")
    parts = path.split("/")
    if len(parts) < 2 or not parts[-1] or not parts[-2]:
        raise ValueError(f"issue item has no usable repository_url: {item.get('repository_url')!r}")
    return f"{parts[-2]}/{parts[-1]}"


def label_names(labels: Any) -> tuple[str, ...]:
    names: list[str] = []
    for label in labels or ():
        if isinstance(label, Mapping) and label.get("name"):
            names.append(str(label["name"]))
        elif isinstance(label, str):
            names.append(label)
    return tuple(names)


def issue_from_item(item: Mapping[str, Any], repo: str | None = None) -> GitHubIssue:
    """Our GitHubIssue from an issue object as the search, issues and webhook payloads give it."""
    return GitHubIssue(
        repo=repo or repo_of(item),
        number=int(item["number"]),
        title=str(item.get("title") or ""),
        url=str(item.get("html_url") or ""),
        labels=label_names(item.get("labels")),
        state=str(item.get("state") or "open"),
        node_id=str(item.get("node_id") or ""),
        updated_at=_parse_time(item.get("updated_at")),
        is_pull_request="pull_request" in item,
        state_reason=item.get("state_reason"),
    )


def _rate_limit_from(headers: Mapping[str, str]) -> RateLimitInfo | None:
    try:
        limit = int(headers["x-ratelimit-limit"])
        remaining = int(headers["x-ratelimit-remaining"])
        reset = float(headers["x-ratelimit-reset"])
    except (KeyError, ValueError):
        return None
    used_raw = headers.get("x-ratelimit-used")
    return RateLimitInfo(
        resource=headers.get("x-ratelimit-resource", "core"),
        limit=limit,
        remaining=remaining,
        used=int(used_raw) if used_raw and used_raw.isdigit() else None,
        reset_at=datetime.fromtimestamp(reset, UTC),
    )


def _resource_for(url: str) -> str:
    return "search" if "/search/" in urlsplit(url).path else "core"


def _path(url: str) -> str:
    """A URL's path, for messages: no host, no query."""
    return urlsplit(url).path or "/"


# --- the ETag cache -------------------------------------------------------------------------------


class BoundedCache(MutableMapping[str, Any]):
    """gidgethub's ETag cache, least recently used entries dropped beyond `max_entries`."""

    def __init__(self, max_entries: int = 5_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, Any] = OrderedDict()

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        self._data.move_to_end(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


# --- the transport: gidgethub with our timeouts, counters and waits ----------------------------


class _GitHubAPI(gh_aiohttp.GitHubAPI):
    """gidgethub's aiohttp GitHubAPI plus counters, a timeout, retries and rate-limit waits."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        policy: RetryPolicy,
        sleep: Sleep,
        clock: Callable[[], float],
        **kwargs: Any,
    ) -> None:
        super().__init__(session, REQUESTER, **kwargs)
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=policy.request_timeout)
        self.requests_made = 0
        self.not_modified = 0
        self.limits: dict[str, RateLimitInfo] = {}
        self.waits: list[float] = []  # every rate-limit or backoff wait, in seconds

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await self._sleep(seconds)

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        attempt = 0
        while True:
            attempt += 1
            self.requests_made += 1
            try:
                async with self._session.request(
                    method, url, headers=headers, data=body, timeout=self._timeout
                ) as response:
                    payload = await response.read()
                    status, response_headers = response.status, response.headers
            except (TimeoutError, aiohttp.ClientError) as exc:
                if attempt > self.policy.max_retries:
                    raise GitHubUnavailable(
                        f"GitHub did not answer {method} {_path(url)} after {attempt} attempts "
                        f"({type(exc).__name__})"
                    ) from None
                # DEBUG: when GitHub is down the loop says so once ("github: down").
                log.debug("GitHub %s %s: %s; retrying", method, _path(url), type(exc).__name__)
                await self.sleep(self.policy.backoff(attempt))
                continue
            if status == 304:
                self.not_modified += 1
            info = _rate_limit_from(response_headers)
            if info is not None:
                self.limits[info.resource] = info
            return status, response_headers, payload

    async def manage_rate_limit(self, *, method: str, url: str) -> None:
        # Before asking, not after being refused: when GitHub said the window is spent, wait
        # for its reset rather than spend a request on a certain 403.
        info = self.limits.get(_resource_for(url))
        if info is None or info.remaining > 0:
            return
        wait = info.reset_at.timestamp() - self._clock() + 1.0
        if wait <= 0:
            return
        if wait > self.policy.max_wait:
            raise GitHubRateLimited(
                f"GitHub's {info.resource} rate limit is spent until "
                f"{info.reset_at:%H:%M:%S} UTC ({wait:.0f}s, more than the "
                f"{self.policy.max_wait:.0f}s we wait)"
            )
        await self.sleep(wait)
        self.limits.pop(info.resource, None)

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: HTTPException, attempt: int
    ) -> bool:
        status = int(exception.status_code)
        if attempt > self.policy.max_retries:
            return False
        if isinstance(exception, GitHubBroken) or status >= 500:
            log.warning("GitHub %s %s answered %s; retrying", method, _path(url), status)
            await self.sleep(self.policy.backoff(attempt))
            return True
        if status not in (403, 429):
            return False
        wait = self._rate_limit_wait(exception, status, attempt)
        if wait is None:
            return False  # a plain 403: permissions, not a rate limit
        if wait > self.policy.max_wait:
            raise GitHubRateLimited(
                f"GitHub rate-limited {method} {_path(url)} for {wait:.0f}s, more than the "
                f"{self.policy.max_wait:.0f}s we wait"
            )
        log.warning("GitHub rate-limited %s %s; waiting %.1fs", method, _path(url), wait)
        await self.sleep(wait)
        # Waited out: the refusal's "0 remaining" must not make manage_rate_limit wait again.
        self.limits.pop(_resource_for(url), None)
        return True

    def _rate_limit_wait(self, exc: HTTPException, status: int, attempt: int) -> float | None:
        """How long GitHub asks us to wait, following its documented order; None: not a limit."""
        headers = exc.headers
        retry_after = headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                pass
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                reset = float(headers["x-ratelimit-reset"])
            except ValueError:
                reset = self._clock() + self.policy.secondary_default_wait
            return max(0.0, reset - self._clock()) + 1.0
        message = str(exc).lower()
        if status == 429 or "rate limit" in message or "abuse" in message:
            # Uncapped here: a wait over max_wait is refused by the caller, not shortened.
            return exponential(attempt - 1, base=self.policy.secondary_default_wait, cap=math.inf)
        return None


# --- the client -----------------------------------------------------------------------------------


class _SplitQuery(Exception):
    """The group must be searched as two halves."""


class _TooManyResults(Exception):
    def __init__(self, total: int) -> None:
        super().__init__(total)
        self.total = total


@dataclass
class _QueryOutcome:
    issues: list[GitHubIssue]
    incomplete_reason: str | None = None


class GitHubClient:
    """Conductor-E's GitHub: searches for agent-ready issues and fetches single issues."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        *,
        cache: MutableMapping[str, Any] | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep | None = None,
        clock: Callable[[], float] = time.time,
        max_query_length: int = MAX_QUERY_LENGTH,
    ) -> None:
        self.settings = settings
        self.max_query_length = max_query_length
        self.cache = cache if cache is not None else BoundedCache()
        token = settings.github_token.get_secret_value() if settings.github_token else None
        self.api = _GitHubAPI(
            session,
            # CONDUCTOR_RETRY_MAX_SECONDS bounds every wait on an upstream that is down.
            policy=policy or RetryPolicy(backoff_max=min(30.0, settings.retry_max_seconds)),
            sleep=sleep or asyncio.sleep,
            clock=clock,
            oauth_token=token,
            cache=self.cache,
            base_url=settings.github_api_url,
        )
        # Repos GitHub refused in a combined query: searched on their own from then on.
        self._alone: set[str] = set()

    @property
    def requests_made(self) -> int:
        return self.api.requests_made

    @property
    def rate_limits(self) -> dict[str, RateLimitInfo]:
        return dict(self.api.limits)

    async def _get(
        self, url: str, url_vars: Mapping[str, Any] | None = None
    ) -> tuple[Any, str | None]:
        """GET through gidgethub (ETag cache, retries); returns (data, next page URL)."""
        return await self._send("GET", url, url_vars)

    async def _send(
        self, method: str, url: str, url_vars: Mapping[str, Any] | None = None, body: Any = None
    ) -> tuple[Any, str | None]:
        """One request through gidgethub (retries on 5xx and rate limits); GitHub's refusals
        become GitHubNotFound, GitHubUnavailable, GitHubUnauthorized or GitHubError."""
        try:
            data, more, _status = await self.api._make_request(
                method,
                url,
                url_vars or {},
                b"" if body is None else body,  # gidgethub sends anything else as JSON
                "application/vnd.github+json",
                extra_headers={"x-github-api-version": API_VERSION},
            )
        except HTTPException as exc:
            status = int(exc.status_code)
            if status in (404, 410):
                raise GitHubNotFound(f"GitHub: {_path(url)} not found ({status})") from None
            if status >= 500:
                raise GitHubUnavailable(
                    f"GitHub answered {status} to {method} {_path(url)} after "
                    f"{self.api.policy.max_retries + 1} attempts"
                ) from None
            if status == 401:
                raise _unauthorized(exc) from None
            detail = str(exc) or exc.status_code.phrase
            raise GitHubError(f"GitHub refused {method} {_path(url)}: {status} {detail}") from None
        return data, more

    # --- search --------------------------------------------------------------------------------

    async def find_agent_ready(self) -> SearchReport:
        """Every open issue labelled the agent-ready label across the managed repos and org.

        Never raises for a failed query: the report lists what was found, and why it may be
        incomplete, per query.
        """
        settings = self.settings
        label = settings.agent_ready_label
        report = SearchReport(scope=search_scope(settings))
        requests_before, not_modified_before = self.api.requests_made, self.api.not_modified
        pending = plan_queries(
            settings.managed_repos,
            settings.github_org,
            label,
            max_length=self.max_query_length,
            alone=frozenset(self._alone),
        )
        seen: set[tuple[str, int]] = set()
        while pending:
            query = pending.pop(0)
            report.queries.append(query.q(label))
            try:
                outcome = await self._run(query, label)
            except _SplitQuery:
                half = len(query.repos) // 2
                pending[:0] = [
                    SearchQuery(repos=query.repos[:half]),
                    SearchQuery(repos=query.repos[half:]),
                ]
                continue
            except (GitHubError, GitHubUnavailable, GitHubNotFound) as exc:
                report._mark_incomplete(query, f"{query.describe()}: {exc.message}")
                if isinstance(exc, GitHubUnavailable):
                    report.unavailable = type(exc).__name__
                report.unauthorized = report.unauthorized or isinstance(exc, GitHubUnauthorized)
                continue
            if outcome.incomplete_reason:
                report._mark_incomplete(query, f"{query.describe()}: {outcome.incomplete_reason}")
            for issue in outcome.issues:
                key = (issue.repo.lower(), issue.number)
                if key not in seen and not issue.is_pull_request:
                    seen.add(key)
                    report.issues.append(issue)
        report.requests_made = self.api.requests_made - requests_before
        report.not_modified = self.api.not_modified - not_modified_before
        report.rate_limits = dict(self.api.limits)
        return report

    async def _run(self, query: SearchQuery, label: str) -> _QueryOutcome:
        """One planned query; raises _SplitQuery when a group must be halved and retried."""
        try:
            return await self._search(query, label)
        except _TooManyResults as exc:
            if len(query.repos) > 1:
                raise _SplitQuery from None
            if not query.repos:
                raise GitHubError(
                    f"{exc.total} agent-ready issues, more than the {SEARCH_RESULT_CAP} a "
                    "search returns; list the repos in CONDUCTOR_MANAGED_REPOS instead"
                ) from None
        except (InvalidField, ValidationError) as exc:
            if len(query.repos) > 1:
                # One unreadable repo fails the whole group: halve until it stands alone.
                raise _SplitQuery from None
            if query.repos:
                self._alone.add(query.repos[0].lower())
            raise GitHubError(f"GitHub refused the search: {exc}") from None
        return await self._list_repo(query, label)

    async def _search(self, query: SearchQuery, label: str) -> _QueryOutcome:
        """All pages of one search. Raises _TooManyResults past the 1,000-result cap."""
        url: str | None = "/search/issues{?q,sort,order,per_page}"
        url_vars: Mapping[str, Any] | None = {
            "q": query.q(label),
            # Oldest first: an issue created while we page lands on the last page, not before.
            "sort": "created",
            "order": "asc",
            "per_page": PER_PAGE,
        }
        issues: list[GitHubIssue] = []
        total: int | None = None
        incomplete = False
        while url:
            data, url = await self._get_search_page(url, url_vars)
            url_vars = None  # the next link is a full URL already
            if total is None:
                total = int(data.get("total_count", 0))
                if total > SEARCH_RESULT_CAP:
                    raise _TooManyResults(total)
            incomplete = incomplete or bool(data.get("incomplete_results"))
            for item in data.get("items", []):
                issues.append(issue_from_item(item))
        reason = None
        if incomplete:
            reason = "GitHub reported incomplete_results (the search timed out on its side)"
        elif total is not None and len({i.node_id or i.number for i in issues}) < total:
            # An issue left the results while we paged, shifting the pages under us.
            reason = f"the results changed while paging ({len(issues)} of {total} seen)"
        return _QueryOutcome(issues, reason)

    async def _get_search_page(
        self, url: str, url_vars: Mapping[str, Any] | None
    ) -> tuple[Any, str | None]:
        """One search page; 422 stays an InvalidField/ValidationError so the caller can split."""
        try:
            data, more, _status = await self.api._make_request(
                "GET",
                url,
                url_vars or {},
                b"",
                "application/vnd.github+json",
                extra_headers={"x-github-api-version": API_VERSION},
            )
        except (InvalidField, ValidationError):
            raise
        except HTTPException as exc:
            status = int(exc.status_code)
            if status >= 500:
                raise GitHubUnavailable(
                    f"GitHub answered {status} to the search after "
                    f"{self.api.policy.max_retries + 1} attempts"
                ) from None
            if status == 401:
                raise _unauthorized(exc) from None
            raise GitHubError(f"GitHub refused the search: {status} {exc}") from None
        return data, more

    async def _list_repo(self, query: SearchQuery, label: str) -> _QueryOutcome:
        """A repo with more agent-ready issues than a search returns: list them (no cap)."""
        owner, name = query.repos[0].split("/", 1)
        url: str | None = "/repos/{owner}/{name}/issues{?labels,state,per_page}"
        url_vars: Mapping[str, Any] | None = {
            "owner": owner,
            "name": name,
            "labels": label,
            "state": "open",
            "per_page": PER_PAGE,
        }
        issues: list[GitHubIssue] = []
        while url:
            data, url = await self._get(url, url_vars)
            url_vars = None
            for item in data:
                issue = issue_from_item(item, repo=query.repos[0])
                if not issue.is_pull_request:
                    issues.append(issue)
        return _QueryOutcome(issues)

    # --- files ---------------------------------------------------------------------------------

    @property
    def not_modified(self) -> int:
        """Answers that were 304 Not Modified (free against the rate limit), so far."""
        return self.api.not_modified

    async def get_file(self, repo: str, path: str) -> RepoFile | None:
        """A file of the repo's default branch through the contents API; None when absent.

        Conditional through the ETag cache: an unchanged file costs a 304, which GitHub does
        not count against the rate limit. Raises GitHubError for an answer that is not a file
        (a directory, a submodule, a file over the API's 1 MB inline limit).
        """
        owner, name = repo.split("/", 1)
        try:
            data, _ = await self._get(
                "/repos/{owner}/{name}/contents/{+path}",
                {"owner": owner, "name": name, "path": path},
            )
        except GitHubNotFound:
            return None
        if not isinstance(data, Mapping) or data.get("type") != "file":
            raise GitHubError(f"GitHub: {repo}/{path} is not a file")
        if data.get("encoding") != "base64":
            raise GitHubError(f"GitHub: {repo}/{path} is too large to read through the API")
        try:
            content = base64.b64decode(str(data.get("content") or ""), validate=False)
        except (binascii.Error, ValueError):
            raise GitHubError(f"GitHub: {repo}/{path} came back undecodable") from None
        return RepoFile(repo=repo, path=path, sha=str(data.get("sha") or ""), content=content)

    # --- single issues -------------------------------------------------------------------------

    async def get_issue(self, repo: str, number: int) -> GitHubIssue | None:
        """One issue (or pull request) as GitHub has it now; None when it is gone (404/410)."""
        owner, name = repo.split("/", 1)
        try:
            data, _ = await self._get(
                "/repos/{owner}/{name}/issues/{number}",
                {"owner": owner, "name": name, "number": number},
            )
        except GitHubNotFound:
            return None
        # A transferred issue answers with its new home; keep the repo GitHub names.
        return issue_from_item(data)

    # --- labels --------------------------------------------------------------------------------

    async def add_labels(self, repo: str, number: int, labels: Sequence[str]) -> tuple[str, ...]:
        """Add labels to an issue; returns its labels as GitHub has them afterwards."""
        owner, name = repo.split("/", 1)
        data, _ = await self._send(
            "POST",
            "/repos/{owner}/{name}/issues/{number}/labels",
            {"owner": owner, "name": name, "number": number},
            {"labels": list(labels)},
        )
        return label_names(data)

    async def remove_label(self, repo: str, number: int, label: str) -> tuple[str, ...]:
        """Remove a label from an issue; returns its labels afterwards. A label the issue does
        not carry is not an error (GitHub answers 404): its labels are fetched instead."""
        owner, name = repo.split("/", 1)
        try:
            data, _ = await self._send(
                "DELETE",
                "/repos/{owner}/{name}/issues/{number}/labels/{label}",
                {"owner": owner, "name": name, "number": number, "label": label},
            )
        except GitHubNotFound:
            issue = await self.get_issue(repo, number)
            if issue is None:
                raise
            return issue.labels
        return label_names(data)

    # --- pull requests and the merge gate ------------------------------------------------------

    async def get_pull(self, repo: str, number: int) -> PullRequest | None:
        """One pull request as GitHub has it now; None when it does not exist."""
        owner, name = repo.split("/", 1)
        try:
            data, _ = await self._get(
                "/repos/{owner}/{name}/pulls/{number}",
                {"owner": owner, "name": name, "number": number},
            )
        except GitHubNotFound:
            return None
        return pull_from_item(data, repo)

    async def _all_pages(self, url: str, url_vars: Mapping[str, Any], key: str | None) -> list[Any]:
        items: list[Any] = []
        next_url: str | None = url
        variables: Mapping[str, Any] | None = url_vars
        while next_url:
            data, next_url = await self._get(next_url, variables)
            variables = None
            items.extend((data.get(key) or []) if key else data)
        return items

    async def list_reviews(self, repo: str, number: int) -> list[PullReview]:
        """Every review of the PR, oldest first, with the commit each one reviewed."""
        owner, name = repo.split("/", 1)
        items = await self._all_pages(
            "/repos/{owner}/{name}/pulls/{number}/reviews{?per_page}",
            {"owner": owner, "name": name, "number": number, "per_page": PER_PAGE},
            None,
        )
        return [
            PullReview(
                state=str(item.get("state") or "").upper(),
                commit_id=str(item.get("commit_id") or ""),
                user=str((item.get("user") or {}).get("login") or ""),
            )
            for item in items
        ]

    async def commit_checks(self, repo: str, sha: str) -> CommitChecks:
        """The check runs and the combined status of one commit."""
        owner, name = repo.split("/", 1)
        variables = {"owner": owner, "name": name, "sha": sha, "per_page": PER_PAGE}
        runs = await self._all_pages(
            "/repos/{owner}/{name}/commits/{sha}/check-runs{?per_page}", variables, "check_runs"
        )
        status, _ = await self._get(
            "/repos/{owner}/{name}/commits/{sha}/status{?per_page}", variables
        )
        return CommitChecks(
            sha=sha,
            runs=tuple(
                Check(
                    name=str(run.get("name") or ""),
                    state=str(run.get("status") or ""),
                    conclusion=run.get("conclusion"),
                )
                for run in runs
            ),
            statuses=tuple(
                Check(name=str(item.get("context") or ""), state=str(item.get("state") or ""))
                for item in status.get("statuses") or []
            ),
        )

    async def merge_pull(self, repo: str, number: int, *, sha: str, method: str) -> MergeResult:
        """`PUT .../pulls/{n}/merge` guarded by `sha`; a refusal comes back as a MergeResult
        (405 not mergeable, 409 head moved, 422, 403 branch protection), not an exception."""
        owner, name = repo.split("/", 1)
        try:
            data, _more, _status = await self.api._make_request(
                "PUT",
                "/repos/{owner}/{name}/pulls/{number}/merge",
                {"owner": owner, "name": name, "number": number},
                {"sha": sha, "merge_method": method},
                "application/vnd.github+json",
                extra_headers={"x-github-api-version": API_VERSION},
            )
        except HTTPException as exc:
            status = int(exc.status_code)
            if status >= 500:
                raise GitHubUnavailable(
                    f"GitHub answered {status} to the merge of {repo}#{number}"
                ) from None
            if status == 401:
                raise _unauthorized(exc) from None
            if status == 404:
                raise GitHubNotFound(f"GitHub: {repo} PR #{number} not found") from None
            detail = (str(exc) or exc.status_code.phrase)[:300]
            return MergeResult(merged=False, status=status, message=detail)
        assert isinstance(data, Mapping)
        return MergeResult(
            merged=bool(data.get("merged")),
            status=200,
            message=str(data.get("message") or "")[:300],
            sha=str(data.get("sha") or ""),
        )


@dataclass(frozen=True)
class PullRequest:
    """A pull request as the merge gate judges it."""

    repo: str
    number: int
    state: str  # "open" | "closed"
    merged: bool
    draft: bool
    mergeable: bool | None  # None: GitHub has not computed it yet
    mergeable_state: str
    head_sha: str
    head_ref: str
    body: str
    labels: tuple[str, ...]
    url: str
    merged_by: str = ""


@dataclass(frozen=True)
class PullReview:
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED, PENDING
    commit_id: str
    user: str


@dataclass(frozen=True)
class Check:
    """A check run (state = its status, with a conclusion once completed) or a commit status
    (state = error | failure | pending | success)."""

    name: str
    state: str
    conclusion: str | None = None


@dataclass(frozen=True)
class CommitChecks:
    sha: str
    runs: tuple[Check, ...]
    statuses: tuple[Check, ...]


@dataclass(frozen=True)
class MergeResult:
    merged: bool
    status: int  # 200, or GitHub's refusal (405, 409, 422, 403)
    message: str
    sha: str = ""


def pull_from_item(item: Mapping[str, Any], repo: str | None = None) -> PullRequest:
    """Our PullRequest from GitHub's pull request object (REST or a webhook payload)."""
    head = item.get("head") or {}
    base_repo = (item.get("base") or {}).get("repo") or {}
    mergeable = item.get("mergeable")
    return PullRequest(
        repo=repo or str(base_repo.get("full_name") or ""),
        number=int(item["number"]),
        state=str(item.get("state") or "open"),
        merged=bool(item.get("merged")),
        draft=bool(item.get("draft")),
        mergeable=mergeable if isinstance(mergeable, bool) else None,
        mergeable_state=str(item.get("mergeable_state") or ""),
        head_sha=str(head.get("sha") or ""),
        head_ref=str(head.get("ref") or ""),
        body=str(item.get("body") or ""),
        labels=label_names(item.get("labels")),
        url=str(item.get("html_url") or ""),
        merged_by=str((item.get("merged_by") or {}).get("login") or ""),
    )
