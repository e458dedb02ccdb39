"""GitHubClient: one per process, over the process's one `aiohttp.ClientSession` (never its own)
and gidgethub's ETag cache kept for its lifetime, so an unchanged search or file costs a
conditional request only (GitHub's 304 does not count against the primary rate limit).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from gidgethub import HTTPException, InvalidField, ValidationError

from bot.integrations.github.errors import (
    GitHubError,
    GitHubNotFound,
    GitHubUnauthorized,
    GitHubUnavailable,
    unauthorized,
)
from bot.integrations.github.models import (
    Check,
    CommitChecks,
    GitHubIssue,
    MergeResult,
    PullRequest,
    PullReview,
    RateLimitInfo,
    RepoFile,
    issue_from_item,
    label_names,
    pull_from_item,
)
from bot.integrations.github.search import (
    MAX_QUERY_LENGTH,
    SEARCH_RESULT_CAP,
    SearchQuery,
    SearchReport,
    plan_queries,
    search_scope,
)
from bot.integrations.github.transport import (
    API_VERSION,
    BoundedCache,
    RetryingAPI,
    RetryPolicy,
    Sleep,
    url_path,
)
from bot.settings import Settings

PER_PAGE = 100


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
    """Conductor-E's GitHub: the agent-ready search, issues, files, labels and pull requests."""

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
        self.api = RetryingAPI(
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
                raise GitHubNotFound(f"GitHub: {url_path(url)} not found ({status})") from None
            if status >= 500:
                raise GitHubUnavailable(
                    f"GitHub answered {status} to {method} {url_path(url)} after "
                    f"{self.api.policy.max_retries + 1} attempts"
                ) from None
            if status == 401:
                raise unauthorized(exc) from None
            detail = str(exc) or exc.status_code.phrase
            raise GitHubError(
                f"GitHub refused {method} {url_path(url)}: {status} {detail}"
            ) from None
        return data, more

    async def _get_found(self, url: str, url_vars: Mapping[str, Any]) -> Any:
        """GET one object; None when GitHub says it is not there (404/410)."""
        try:
            data, _ = await self._get(url, url_vars)
        except GitHubNotFound:
            return None
        return data

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
                report.mark_incomplete(query, f"{query.describe()}: {exc.message}")
                if isinstance(exc, GitHubUnavailable):
                    report.unavailable = type(exc).__name__
                report.unauthorized = report.unauthorized or isinstance(exc, GitHubUnauthorized)
                continue
            if outcome.incomplete_reason:
                report.mark_incomplete(query, f"{query.describe()}: {outcome.incomplete_reason}")
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
                raise unauthorized(exc) from None
            raise GitHubError(f"GitHub refused the search: {status} {exc}") from None
        return data, more

    async def _list_repo(self, query: SearchQuery, label: str) -> _QueryOutcome:
        """A repo with more agent-ready issues than a search returns: list them (no cap)."""
        url: str | None = "/repos/{owner}/{name}/issues{?labels,state,per_page}"
        url_vars: Mapping[str, Any] | None = _repo_vars(
            query.repos[0], labels=label, state="open", per_page=PER_PAGE
        )
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
        data = await self._get_found(
            "/repos/{owner}/{name}/contents/{+path}", _repo_vars(repo, path=path)
        )
        if data is None:
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
        data = await self._get_found(
            "/repos/{owner}/{name}/issues/{number}", _repo_vars(repo, number=number)
        )
        # A transferred issue answers with its new home; keep the repo GitHub names.
        return None if data is None else issue_from_item(data)

    # --- labels --------------------------------------------------------------------------------

    async def add_labels(self, repo: str, number: int, labels: Sequence[str]) -> tuple[str, ...]:
        """Add labels to an issue; returns its labels as GitHub has them afterwards."""
        data, _ = await self._send(
            "POST",
            "/repos/{owner}/{name}/issues/{number}/labels",
            _repo_vars(repo, number=number),
            {"labels": list(labels)},
        )
        return label_names(data)

    async def remove_label(self, repo: str, number: int, label: str) -> tuple[str, ...]:
        """Remove a label from an issue; returns its labels afterwards. A label the issue does
        not carry is not an error (GitHub answers 404): its labels are fetched instead."""
        try:
            data, _ = await self._send(
                "DELETE",
                "/repos/{owner}/{name}/issues/{number}/labels/{label}",
                _repo_vars(repo, number=number, label=label),
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
        data = await self._get_found(
            "/repos/{owner}/{name}/pulls/{number}", _repo_vars(repo, number=number)
        )
        return None if data is None else pull_from_item(data, repo)

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
        items = await self._all_pages(
            "/repos/{owner}/{name}/pulls/{number}/reviews{?per_page}",
            _repo_vars(repo, number=number, per_page=PER_PAGE),
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
        variables = _repo_vars(repo, sha=sha, per_page=PER_PAGE)
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
        try:
            data, _more, _status = await self.api._make_request(
                "PUT",
                "/repos/{owner}/{name}/pulls/{number}/merge",
                _repo_vars(repo, number=number),
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
                raise unauthorized(exc) from None
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


def _repo_vars(repo: str, **more: Any) -> dict[str, Any]:
    """The URL variables of a `/repos/{owner}/{name}/...` template, plus `more`."""
    owner, name = repo.split("/", 1)
    return {"owner": owner, "name": name, **more}
