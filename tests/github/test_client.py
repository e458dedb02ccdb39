"""The GitHub client against the fake GitHub: batching, pagination, ETags, limits and faults."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pytest

from bot.integrations.github import (
    GitHubClient,
    GitHubIssue,
    RetryPolicy,
    SearchQuery,
    plan_queries,
)
from bot.services.github.sync import priority_from_labels
from bot.settings import DEFAULT_PRIORITY_LABELS, Settings
from tests.fakes.github import FakeGitHub, RateWindow
from tests.github.conftest import TOKEN, RecordingSleep

READY = "agent-ready"


def seed(fake: FakeGitHub, repos: list[str], per_repo: int) -> set[tuple[str, int]]:
    """`per_repo` agent-ready issues in each repo, plus noise that must not be found."""
    ready: set[tuple[str, int]] = set()
    for repo in repos:
        for _ in range(per_repo):
            issue = fake.add_issue(repo, labels=[READY, "bug"])
            ready.add((repo, issue["number"]))
        fake.add_issue(repo, labels=["bug"])  # not agent-ready
        fake.add_issue(repo, labels=[READY], state="closed")  # closed
        fake.add_issue(repo, labels=[READY], pull_request=True)  # a pull request
    return ready


def found(issues: list[GitHubIssue]) -> set[tuple[str, int]]:
    return {(issue.repo, issue.number) for issue in issues}


# --- planning -------------------------------------------------------------------------------------


def test_plan_packs_repos_within_256_characters_and_covers_each_once() -> None:
    repos = [f"acme-corporation/service-{i:03d}" for i in range(200)]
    queries = plan_queries(repos, None, READY)
    assert all(len(q.q(READY)) <= 256 for q in queries)
    listed = [repo for q in queries for repo in q.repos]
    assert sorted(listed) == sorted(repos)
    # Packed: no query could have taken the next repo too.
    for query, following in itertools.pairwise(queries):
        bigger = SearchQuery(repos=(*query.repos, following.repos[0]))
        assert len(bigger.q(READY)) > 256
    assert queries[0].q(READY).endswith('label:"agent-ready" is:issue is:open')
    assert " OR " not in queries[0].q(READY) and " AND " not in queries[0].q(READY)


def test_plan_uses_the_org_qualifier_and_skips_its_repos() -> None:
    queries = plan_queries(["acme/api", "Acme/web", "other/tool"], "acme", READY)
    assert [q.q(READY) for q in queries] == [
        'org:acme label:"agent-ready" is:issue is:open',
        'repo:other/tool label:"agent-ready" is:issue is:open',
    ]


def test_plan_refuses_a_label_with_a_double_quote() -> None:
    with pytest.raises(ValueError, match="double quote"):
        plan_queries(["a/b"], None, 'agent"ready')


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([], "normal"),
        (["bug", "agent-ready"], "normal"),
        (["P1"], "high"),
        (["high-priority", "P0"], "critical"),
        (["Priority:Critical"], "critical"),
        (["priority:high", "priority:critical"], "critical"),
    ],
)
def test_priority_from_labels(labels: list[str], expected: str) -> None:
    assert priority_from_labels(labels, DEFAULT_PRIORITY_LABELS) == expected


def test_priority_from_labels_follows_a_configured_mapping(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(CONDUCTOR_PRIORITY_LABELS="Urgent=critical,soon=high")
    assert priority_from_labels(["urgent"], settings.priority_labels) == "critical"
    assert priority_from_labels(["SOON"], settings.priority_labels) == "high"
    assert priority_from_labels(["P0"], settings.priority_labels) == "normal"


# --- searching ------------------------------------------------------------------------------------


async def test_finds_exactly_the_agent_ready_issues_of_30_repos_in_batched_queries(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    repos = [f"acme/repo-{i:02d}" for i in range(30)]
    ready = seed(fake, repos, per_repo=3)
    fake.add_issue("elsewhere/unmanaged", labels=[READY])  # not a managed repo
    settings = make_settings(CONDUCTOR_MANAGED_REPOS=",".join(repos))

    report = await make_client(settings).find_agent_ready()

    assert found(report.issues) == ready
    assert not report.incomplete and report.reasons == []
    searches = fake.searches()
    assert 1 < len(searches) <= 4  # 30 repos in a handful of searches, not 30
    assert report.requests_made == len(searches) == len(fake.requests)
    seen_repos = []
    for request in searches:
        q = request.query["q"]
        assert len(q) <= 256
        assert 'label:"agent-ready"' in q and "is:issue" in q and "is:open" in q
        assert request.query["per_page"] == "100"
        assert request.headers["authorization"] == f"token {TOKEN}"
        seen_repos += [term.removeprefix("repo:") for term in q.split() if term.startswith("repo:")]
    assert sorted(seen_repos) == sorted(repos)
    assert report.rate_limits["search"].limit == 30
    assert report.rate_limit_remaining == 30 - len(searches)
    assert all(report.complete_for(repo) for repo in repos)
    assert not report.complete_for("elsewhere/unmanaged")


async def test_follows_link_pagination(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    ready = seed(fake, ["acme/big"], per_repo=250)
    report = await make_client(make_settings(CONDUCTOR_MANAGED_REPOS="acme/big")).find_agent_ready()
    assert found(report.issues) == ready
    pages = [r.query.get("page", "1") for r in fake.searches()]
    assert pages == ["1", "2", "3"]
    assert not report.incomplete


async def test_an_unchanged_second_run_spends_only_conditional_requests(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    repos = [f"acme/repo-{i:02d}" for i in range(12)]
    ready = seed(fake, repos, per_repo=20)  # 240 issues: some queries have two pages
    client = make_client(make_settings(CONDUCTOR_MANAGED_REPOS=",".join(repos)))
    first = await client.find_agent_ready()
    remaining = first.rate_limit_remaining
    first_count = len(fake.requests)

    second = await client.find_agent_ready()

    again = fake.requests[first_count:]
    assert found(second.issues) == found(first.issues) == ready
    assert len(again) == first_count  # the same pages, asked again…
    assert all("if-none-match" in r.headers for r in again)  # …conditionally
    assert [r.status for r in again] == [304] * len(again)
    assert second.not_modified == second.requests_made == len(again)
    assert second.rate_limit_remaining == remaining  # 304s cost nothing

    # A change shows up on the next run: the changed page is a 200 again.
    fake.add_issue(repos[0], labels=[READY])
    third = await client.find_agent_ready()
    assert len(third.issues) == len(ready) + 1
    assert third.not_modified < third.requests_made


async def test_secondary_rate_limit_waits_for_retry_after(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
    sleeper: RecordingSleep,
) -> None:
    ready = seed(fake, ["acme/api"], per_repo=2)
    fake.secondary_rate_limit(retry_after=42)
    report = await make_client(make_settings(CONDUCTOR_MANAGED_REPOS="acme/api")).find_agent_ready()
    assert sleeper.waits == [42.0]
    assert [r.status for r in fake.searches()] == [403, 200]
    assert found(report.issues) == ready and not report.incomplete


async def test_429_waits_for_retry_after(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
    sleeper: RecordingSleep,
) -> None:
    seed(fake, ["acme/api"], per_repo=1)
    fake.too_many_requests(retry_after=7)
    report = await make_client(make_settings(CONDUCTOR_MANAGED_REPOS="acme/api")).find_agent_ready()
    assert sleeper.waits == [7.0]
    assert not report.incomplete and len(report.issues) == 1


async def test_secondary_limit_without_retry_after_waits_a_minute(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
    sleeper: RecordingSleep,
) -> None:
    seed(fake, ["acme/api"], per_repo=1)
    fake.secondary_rate_limit(retry_after=None)
    report = await make_client(make_settings(CONDUCTOR_MANAGED_REPOS="acme/api")).find_agent_ready()
    assert sleeper.waits == [60.0]
    assert not report.incomplete


async def test_a_primary_limit_403_waits_for_the_reset(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
    sleeper: RecordingSleep,
) -> None:
    seed(fake, ["acme/api"], per_repo=1)
    client = make_client(make_settings(CONDUCTOR_MANAGED_REPOS="acme/api"))
    await client.find_agent_ready()
    fake.spend_rate_limit("search", reset_in=30)
    # The wait is injected: let the fake's window pass when the client sleeps.
    sleeper.then = lambda _seconds: setattr(fake.windows["search"], "remaining", -1)
    before = len(fake.requests)

    report = await client.find_agent_ready()

    assert [r.status for r in fake.requests[before:]] == [403, 304]
    assert len(sleeper.waits) == 1 and 29 <= sleeper.waits[0] <= 32
    assert not report.incomplete and len(report.issues) == 1


async def test_a_known_spent_window_is_waited_out_before_asking(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
    sleeper: RecordingSleep,
) -> None:
    fake.windows["search"] = RateWindow(limit=1, seconds=60)
    seed(fake, ["acme/api"], per_repo=1)
    client = make_client(make_settings(CONDUCTOR_MANAGED_REPOS="acme/api"))
    await client.find_agent_ready()  # the answer says: 0 remaining until the reset
    assert client.rate_limits["search"].remaining == 0
    sleeper.then = lambda _seconds: setattr(fake.windows["search"], "remaining", -1)
    before = len(fake.requests)

    report = await client.find_agent_ready()

    assert [r.status for r in fake.requests[before:]] == [304]  # no 403 spent
    assert len(sleeper.waits) == 1 and 55 <= sleeper.waits[0] <= 62
    assert not report.incomplete


async def test_a_wait_longer_than_the_cap_gives_up_and_reports(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
    sleeper: RecordingSleep,
) -> None:
    seed(fake, ["acme/api"], per_repo=1)
    fake.secondary_rate_limit(retry_after=3600)
    client = make_client(
        make_settings(CONDUCTOR_MANAGED_REPOS="acme/api"), policy=RetryPolicy(max_wait=120)
    )
    report = await client.find_agent_ready()
    assert sleeper.waits == []
    assert report.incomplete and "3600s" in report.reasons[0]
    assert not report.complete_for("acme/api")


async def test_5xx_is_retried_with_backoff(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
    sleeper: RecordingSleep,
) -> None:
    ready = seed(fake, ["acme/api"], per_repo=2)
    fake.fail(500, times=2, path="/search/")
    report = await make_client(make_settings(CONDUCTOR_MANAGED_REPOS="acme/api")).find_agent_ready()
    assert [r.status for r in fake.searches()] == [500, 500, 200]
    assert sleeper.waits == [1.0, 2.0]
    assert found(report.issues) == ready and not report.incomplete


async def test_persistent_5xx_is_reported_after_bounded_retries(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    repos = [f"acme/repo-{i:02d}" for i in range(30)]
    ready = seed(fake, repos, per_repo=1)
    fake.fail(502, times=4, path="/search/")  # the first query's four attempts
    report = await make_client(
        make_settings(CONDUCTOR_MANAGED_REPOS=",".join(repos))
    ).find_agent_ready()
    assert [r.status for r in fake.searches()][:4] == [502] * 4
    assert report.incomplete and "502" in report.reasons[0]
    failed = [repo for repo in repos if not report.complete_for(repo)]
    assert failed and len(failed) < len(repos)  # only the failed query's repos
    assert found(report.issues) == {item for item in ready if item[0] not in failed}


async def test_incomplete_results_are_reported_not_taken_as_complete(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    seed(fake, ["acme/api"], per_repo=3)
    fake.incomplete()
    report = await make_client(make_settings(CONDUCTOR_MANAGED_REPOS="acme/api")).find_agent_ready()
    assert report.incomplete
    assert "incomplete_results" in report.reasons[0]
    assert not report.complete_for("acme/api")


async def test_a_timeout_is_retried(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
    sleeper: RecordingSleep,
) -> None:
    ready = seed(fake, ["acme/api"], per_repo=1)
    fake.hang(1)
    client = make_client(
        make_settings(CONDUCTOR_MANAGED_REPOS="acme/api"),
        policy=RetryPolicy(request_timeout=0.2),
    )
    report = await client.find_agent_ready()
    fake.release()
    assert found(report.issues) == ready and not report.incomplete
    assert report.requests_made == 2 and sleeper.waits == [1.0]


async def test_a_group_over_1000_results_is_split(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    ready = seed(fake, ["acme/one", "acme/two"], per_repo=600)
    report = await make_client(
        make_settings(CONDUCTOR_MANAGED_REPOS="acme/one,acme/two")
    ).find_agent_ready()
    assert found(report.issues) == ready and not report.incomplete
    queries = fake.search_queries()
    assert queries[0].startswith("repo:acme/one repo:acme/two")
    assert {q.split()[0] for q in queries[1:]} == {"repo:acme/one", "repo:acme/two"}


async def test_a_single_repo_over_1000_results_is_listed_instead(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    ready = seed(fake, ["acme/huge"], per_repo=1050)
    report = await make_client(
        make_settings(CONDUCTOR_MANAGED_REPOS="acme/huge")
    ).find_agent_ready()
    assert found(report.issues) == ready and not report.incomplete
    listings = [r for r in fake.requests if r.path == "/repos/acme/huge/issues"]
    assert len(listings) == 11
    assert listings[0].query["labels"] == READY and listings[0].query["state"] == "open"


async def test_an_unsearchable_repo_is_isolated_and_named(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    repos = [f"acme/repo-{i}" for i in range(8)]
    ready = seed(fake, repos, per_repo=1)
    fake.unsearchable.add("acme/repo-5")
    client = make_client(make_settings(CONDUCTOR_MANAGED_REPOS=",".join(repos)))
    report = await client.find_agent_ready()
    assert found(report.issues) == {item for item in ready if item[0] != "acme/repo-5"}
    assert len(report.reasons) == 1 and report.reasons[0].startswith("acme/repo-5:")
    assert [repo for repo in repos if not report.complete_for(repo)] == ["acme/repo-5"]
    # Next run: searched on its own straight away, so the others are one query again.
    before = len(fake.searches())
    await client.find_agent_ready()
    assert len(fake.searches()) - before == 2


async def test_org_search(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    ready = seed(fake, ["acme/a", "acme/b", "other/c"], per_repo=2)
    fake.add_issue("stranger/d", labels=[READY])
    settings = make_settings(CONDUCTOR_GITHUB_ORG="acme", CONDUCTOR_MANAGED_REPOS="other/c")
    report = await make_client(settings).find_agent_ready()
    assert found(report.issues) == ready
    assert fake.search_queries() == [
        'org:acme label:"agent-ready" is:issue is:open',
        'repo:other/c label:"agent-ready" is:issue is:open',
    ]
    assert report.complete_for("acme/anything") and not report.complete_for("stranger/d")


async def test_bad_credentials_are_reported_without_the_token(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seed(fake, ["acme/api"], per_repo=1)
    settings = make_settings(CONDUCTOR_MANAGED_REPOS="acme/api", GITHUB_TOKEN="ghp_wrong_secret")
    report = await make_client(settings).find_agent_ready()
    assert report.incomplete and "401" in report.reasons[0]
    assert "Bad credentials" in report.reasons[0]
    assert "ghp_wrong_secret" not in " ".join(report.reasons) + caplog.text
    assert fake.requests[0].headers["authorization"] == "token ghp_wrong_secret"


async def test_get_issue(
    fake: FakeGitHub,
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> None:
    fake.add_issue("acme/api", 7, title="Fix it", labels=[READY, "P1"])
    client = make_client(make_settings())
    issue = await client.get_issue("acme/api", 7)
    assert issue is not None
    assert (issue.repo, issue.number, issue.title, issue.state) == ("acme/api", 7, "Fix it", "open")
    assert issue.labels == (READY, "P1") and issue.node_id.startswith("I_")
    assert issue.url == "https://github.com/acme/api/issues/7"
    assert await client.get_issue("acme/api", 8) is None
