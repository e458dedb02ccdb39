"""Review-E's verdict and merge request, as src/stream-consumer.js sends them.

Source: tests.compat.runtime.STREAM_CONSUMER_JS. For a review assignment the runtime's
issueNumber IS the PR number; the verdict must land on the issue the PR closes, or wait for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from bot.context import AppContext
from tests.api.test_webhook_route import ENV, deliver
from tests.compat.conftest import read, send, timeline
from tests.compat.runtime import execution_log_create, merge_request, review_verdict, token_usage
from tests.fakes.github import pull_request_payload

ISSUE = "acme/app#12"
APPROVED = {"type": "ISSUE_APPROVED", "repo": "acme/app", "issueNumber": 12, "title": "Login"}
PR_CREATED = {
    "type": "PR_CREATED",
    "repo": "acme/app",
    "issueNumber": 12,
    "prNumber": 41,
    "agentId": "dev-e-node",
}


async def _issue(api: TestClient, number: int, status: int = 200) -> Any:
    return await read(api, f"/api/issues/acme/app/{number}", status)


async def test_a_verdict_on_a_known_pr_lands_on_its_issue(api: TestClient) -> None:
    await send(api, "/api/events", APPROVED)
    await send(api, "/api/events", PR_CREATED)
    for verdict, state, review in [
        ("REVIEW_DISPUTED", "in_progress", "changes_requested"),
        ("REVIEW_PASSED", "in_progress", "approved"),
    ]:
        answer = await send(
            api, "/api/events", review_verdict(verdict, "acme/app", "41", "review-e")
        )
        assert answer["streamId"] == ISSUE
        issue = await _issue(api, 12)
        assert (issue["state"], issue["reviewState"], issue["prNumber"]) == (state, review, 41)
    await _issue(api, 41, 404)  # no issue row is made up for the PR number

    answer = await send(api, "/api/merge", merge_request("acme/app", "41"), status=202)
    assert (answer["streamId"], answer["gate"], answer["merged"]) == (ISSUE, "off", False)
    assert "not on for acme/app" in answer["message"]
    kinds = [e["type"] for e in await timeline(api, ISSUE)]
    assert kinds[-3:] == ["REVIEW_DISPUTED", "REVIEW_PASSED", "MERGE_REQUESTED"]
    assert "MERGED" not in kinds


async def test_a_verdict_before_its_pr_is_known_waits_and_is_linked(
    make_context: Callable[..., AppContext],
    api_client_factory: Callable[[AppContext], Awaitable[TestClient]],
) -> None:
    """Review-E can be quicker than the PR webhook: the verdict waits on `acme/app!41`."""
    api = await api_client_factory(make_context(ENV))
    await send(api, "/api/events", APPROVED)
    verdict = await send(
        api, "/api/events", review_verdict("REVIEW_PASSED", "acme/app", "41", "review-e")
    )
    assert verdict["streamId"] == "acme/app!41"
    merge = await send(api, "/api/merge", merge_request("acme/app", "41"), status=202)
    assert merge["streamId"] == "acme/app!41"
    waiting = await timeline(api, "acme/app!41")
    assert [e["type"] for e in waiting] == ["REVIEW_PASSED", "MERGE_REQUESTED"]
    await _issue(api, 41, 404)

    # GitHub's pull_request webhook tells us PR 41 closes issue 12: both are linked.
    opened = pull_request_payload("opened", "acme/app", 41, body="Implements it.\n\nCloses #12")
    response = await deliver(api, "pull_request", opened, delivery="pr-41")
    assert response.status == 200
    events = await timeline(api, ISSUE)
    assert [e["type"] for e in events] == [
        "ISSUE_APPROVED",
        "PR_CREATED",
        "REVIEW_PASSED",
        "MERGE_REQUESTED",
    ]
    assert [e["metadata"].get("linkedFrom") for e in events[2:]] == [
        waiting[0]["position"],
        waiting[1]["position"],
    ]
    assert events[2]["data"]["agentId"] == "review-e"
    issue = await _issue(api, 12)
    assert (issue["reviewState"], issue["prNumber"]) == ("approved", 41)

    # Linked once: a redelivery or a later PR event copies nothing again.
    await deliver(api, "pull_request", opened, delivery="pr-41-again")
    await send(api, "/api/events", {**PR_CREATED, "type": "CI_PASSED"})
    assert [e["type"] for e in await timeline(api, ISSUE)].count("REVIEW_PASSED") == 1
    # Later verdicts go straight to the issue.
    answer = await send(
        api, "/api/events", review_verdict("REVIEW_DISPUTED", "acme/app", "41", "review-e")
    )
    assert answer["streamId"] == ISSUE


async def test_a_pr_created_by_the_agent_links_what_waited(api: TestClient) -> None:
    await send(api, "/api/events", APPROVED)
    await send(api, "/api/events", review_verdict("REVIEW_DISPUTED", "acme/app", "41", "review-e"))
    await send(api, "/api/events", PR_CREATED)
    kinds = [e["type"] for e in await timeline(api, ISSUE)]
    assert kinds == ["ISSUE_APPROVED", "PR_CREATED", "REVIEW_DISPUTED"]
    assert (await _issue(api, 12))["state"] == "in_progress"


async def test_a_malformed_merge_request_is_refused(api: TestClient) -> None:
    for body in ({"repo": "acme/app"}, {"repo": "acme/app", "prNumber": "41"}, [1]):
        answer = await send(api, "/api/merge", body, status=400)
        assert answer["error"] == "invalid_request"
    assert (await read(api, "/api/events"))["events"] == []


async def test_review_e_usage_and_runs_under_the_pr_number_count_for_the_issue(
    api: TestClient,
) -> None:
    """For a review assignment the stream consumer sets CONDUCTOR_ISSUE_NUMBER to the PR number
    (so conductor.js reports usage under it) and creates the execution log with it."""
    await send(api, "/api/events", APPROVED)
    await send(api, "/api/events", PR_CREATED)
    usage = token_usage(
        "review-e",
        model="claude-sonnet-4-6",
        input_tokens=2_000,
        cost_usd=0.006,
        env_repo="acme/app",
        env_issue="41",
    )
    await send(api, "/api/events", usage)
    run = await send(
        api, "/api/execution-logs", execution_log_create("acme/app", "41", "review-e", None), 201
    )
    assert run["issueNumber"] == 12

    cost = await read(api, "/api/costs/issue?repo=acme/app&issueNumber=12")
    assert cost["byAgent"][0]["agentId"] == "review-e"
    assert cost["total"]["tokens"]["input"] == 2_000
    listed = await read(api, "/api/execution-logs?repo=acme/app&issueNumber=12")
    assert [r["agentId"] for r in listed["executionLogs"]] == ["review-e"]
    await _issue(api, 41, 404)
