"""GitHub through gidgethub: the agent-ready issue search, single issues, files and labels, and
what the merge gate needs (a PR, its reviews, its head's checks, the sha-guarded merge).

Every answer is one of our dataclasses (`models`). The token is sent as `Authorization: token …`
and never appears in a log line or an error. Callers import from here; the modules are
`errors`, `models`, `search` (planning), `transport` (retries, rate limits, ETag cache) and
`client` (`GitHubClient`).
"""

from bot.integrations.github.client import PER_PAGE, GitHubClient
from bot.integrations.github.errors import (
    GitHubError,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubUnauthorized,
    GitHubUnavailable,
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
    repo_of,
)
from bot.integrations.github.search import (
    MAX_QUERY_LENGTH,
    SEARCH_RESULT_CAP,
    SearchQuery,
    SearchReport,
    SearchScope,
    plan_queries,
    search_scope,
)
from bot.integrations.github.transport import (
    API_VERSION,
    REQUESTER,
    BoundedCache,
    RetryPolicy,
    Sleep,
)

__all__ = [
    "API_VERSION",
    "MAX_QUERY_LENGTH",
    "PER_PAGE",
    "REQUESTER",
    "SEARCH_RESULT_CAP",
    "BoundedCache",
    "Check",
    "CommitChecks",
    "GitHubClient",
    "GitHubError",
    "GitHubIssue",
    "GitHubNotFound",
    "GitHubRateLimited",
    "GitHubUnauthorized",
    "GitHubUnavailable",
    "MergeResult",
    "PullRequest",
    "PullReview",
    "RateLimitInfo",
    "RepoFile",
    "RetryPolicy",
    "SearchQuery",
    "SearchReport",
    "SearchScope",
    "Sleep",
    "issue_from_item",
    "label_names",
    "plan_queries",
    "pull_from_item",
    "repo_of",
    "search_scope",
]
