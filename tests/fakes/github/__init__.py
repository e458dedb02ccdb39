"""A fake GitHub REST API for gidgethub to talk to over HTTP on 127.0.0.1, and webhook helpers.

It answers in GitHub's documented shapes, one module per resource family, each holding that
resource's routes, state and test controls:

* `server` — what every request goes through: the token, rate limits and `GET /rate_limit`,
  ETags and 304s, `Link` pagination, the recorded `requests`, and the faults a test injects
  (`fail`, `secondary_rate_limit`, `too_many_requests`, `spend_rate_limit`, `hang`);
* `search` — `GET /search/issues`;
* `issues` — `GET /repos/{o}/{r}/issues[/{n}]` and an issue's labels;
* `pulls` — `GET /repos/{o}/{r}/pulls/{n}` and `PUT .../pulls/{n}/merge`;
* `reviews` — `GET .../pulls/{n}/reviews`;
* `checks` — `GET .../commits/{sha}/check-runs`;
* `statuses` — `GET .../commits/{sha}/status` (the combined state);
* `contents` — `GET .../contents/{path}`;
* `webhooks` — signed deliveries and the payloads of GitHub's events;
* `objects` — the shapes API answers and webhook payloads share.

`FakeGitHub` is all of them in one server: `async with FakeGitHub() as github:`, then point
gidgethub at `github.url`.
"""

from __future__ import annotations

from tests.fakes.github.checks import Checks
from tests.fakes.github.contents import Contents, blob_sha
from tests.fakes.github.objects import iso, issue_object, pull_request_object
from tests.fakes.github.reviews import Reviews
from tests.fakes.github.search import Search
from tests.fakes.github.server import Fault, RateWindow, RecordedRequest
from tests.fakes.github.statuses import Statuses
from tests.fakes.github.webhooks import (
    check_run_payload,
    check_suite_payload,
    delivery_headers,
    encode,
    issues_payload,
    ping_payload,
    pull_request_payload,
    pull_request_review_payload,
    push_payload,
    sign,
)


class FakeGitHub(Search, Reviews, Checks, Statuses, Contents):
    """GitHub's REST API as far as Conductor-E uses it, on 127.0.0.1 at a random port."""

    def green(self, repo: str, number: int) -> str:
        """Make the PR's head green (a completed successful run and a success status)."""
        sha = self.head(repo, number)
        self.set_check(repo, sha, "tests", "completed", "success")
        self.set_status(repo, sha, "ci/build", "success")
        return sha


__all__ = [
    "FakeGitHub",
    "Fault",
    "RateWindow",
    "RecordedRequest",
    "blob_sha",
    "check_run_payload",
    "check_suite_payload",
    "delivery_headers",
    "encode",
    "iso",
    "issue_object",
    "issues_payload",
    "ping_payload",
    "pull_request_object",
    "pull_request_payload",
    "pull_request_review_payload",
    "push_payload",
    "sign",
]
