"""The agent-ready search, planned within GitHub's search limits, and its report.

A query (`q`, qualifiers included) is at most 256 characters: counting the qualifiers is the
conservative reading of the docs, which some pages phrase as "not including qualifiers". No
AND/OR/NOT operators are used (GitHub allows five); several `repo:` qualifiers are ORed
implicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.integrations.github.models import GitHubIssue, RateLimitInfo
from bot.settings import Settings

MAX_QUERY_LENGTH = 256
SEARCH_RESULT_CAP = 1000


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

    def mark_incomplete(self, query: SearchQuery, reason: str) -> None:
        """`query` did not complete: record why, and that its repos were not fully seen."""
        self.reasons.append(reason)
        if query.org:
            self.incomplete_org = True
        self.incomplete_repos.update(repo.lower() for repo in query.repos)


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
