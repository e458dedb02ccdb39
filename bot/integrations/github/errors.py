"""What GitHub's refusals and failures become; no message ever carries the token."""

from __future__ import annotations

from gidgethub import HTTPException

from bot.errors import NotFound, Unavailable, UpstreamError


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


def unauthorized(exc: HTTPException) -> GitHubUnauthorized:
    detail = str(exc) or exc.status_code.phrase
    return GitHubUnauthorized(f"GitHub rejected GITHUB_TOKEN: 401 {detail}")
