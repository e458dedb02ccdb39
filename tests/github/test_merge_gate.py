"""The merge gate against the fake GitHub through the real gidgethub client and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bot.context import AppContext
from bot.services.intake.events import Actor
from bot.services.merge_gate.gate import MergeGate
from bot.services.merge_gate.policy import branch_issue
from bot.services.work.pull_requests import PullRequestService
from bot.wiring import Services
from store import catalogue
from store.events import NewEvent
from tests.fakes.github import (
    FakeGitHub,
    check_suite_payload,
    pull_request_payload,
)

REPO = "acme/api"
ISSUE = "acme/api#5"
PR = 40
REVIEW_E = Actor("review-e", authenticated=False)


def new_gate(context: AppContext) -> MergeGate:
    """A merge gate of its own, as another process would have."""
    return MergeGate(context, PullRequestService(context))


@pytest.fixture
def make(github_context: Callable[..., AppContext]) -> Callable[..., AppContext]:
    def build(**env: str) -> AppContext:
        env.setdefault("CONDUCTOR_MANAGED_REPOS", REPO)
        env.setdefault("CONDUCTOR_MERGE_REPOS", REPO)
        return github_context(**env)

    return build


@pytest.fixture
def context(make: Callable[..., AppContext]) -> AppContext:
    return make()


async def working_issue(context: AppContext, number: int = 5) -> None:
    stream = f"{REPO}#{number}"
    await context.store.append(
        stream,
        [
            NewEvent("ISSUE_APPROVED", {"repo": REPO, "issueNumber": number, "title": "t"}),
            NewEvent("ISSUE_ASSIGNED", {"repo": REPO, "issueNumber": number, "agentId": "dev-e"}),
        ],
    )


async def opened(context: AppContext, fake: FakeGitHub, **pull: Any) -> None:
    """Issue 5 being worked, and PR 40 closing it, opened on GitHub and told by webhook."""
    await working_issue(context)
    pull.setdefault("body", "Closes #5")
    fake.add_pull(REPO, PR, **pull)
    payload = pull_request_payload("opened", REPO, PR, body=pull["body"])
    await Services.build(context).webhooks.handle("pull_request", "d-open", payload)


async def verdict(context: AppContext, kind: str = "REVIEW_PASSED") -> None:
    """Review-E's verdict as the runtime posts it: issueNumber is the PR number."""
    body = {"type": kind, "repo": REPO, "issueNumber": PR, "prNumber": PR, "agentId": "review-e"}
    await Services.build(context).events.record(body, REVIEW_E)


async def types(context: AppContext) -> list[str]:
    return [event.type for event in await context.store.read_stream(ISSUE)]


async def green_webhook(context: AppContext, fake: FakeGitHub, delivery: str = "d-ci") -> Any:
    fake.green(REPO, PR)
    payload = check_suite_payload(REPO, "success", [PR])
    return await Services.build(context).webhooks.handle("check_suite", delivery, payload)


async def test_reviewed_and_green_is_one_sha_guarded_squash_merge(
    context: AppContext, fake: FakeGitHub
) -> None:
    await opened(context, fake)
    head = fake.head(REPO, PR)
    await verdict(context)
    passed = [e for e in await context.store.read_stream(ISSUE) if e.type == "REVIEW_PASSED"]
    assert passed[0].metadata["headSha"] == head  # the head it reviewed

    result = await green_webhook(context, fake)

    assert [d.action for d in result.gate] == ["merged"]
    assert fake.merge_calls == [{"number": PR, "sha": head, "merge_method": "squash"}]
    assert (await types(context)).count("MERGED") == 1
    assert (await context.projections.issue(ISSUE)).state == "deploying"
    # Deciding again (a late webhook) sees GitHub merged: nothing more.
    again = await new_gate(context).decide(REPO, PR, trigger="check_run")
    assert again.action == "recorded" and len(fake.merge_calls) == 1
    assert (await types(context)).count("MERGED") == 1


async def test_the_implementing_agent_cannot_pass_its_own_pr(
    context: AppContext, fake: FakeGitHub
) -> None:
    await opened(context, fake)
    body = {
        "type": "REVIEW_PASSED",
        "repo": REPO,
        "issueNumber": PR,
        "prNumber": PR,
        "agentId": "dev-e",
    }  # the issue's assignee (working_issue)
    await Services.build(context).events.record(body, Actor("dev-e", authenticated=True))

    result = await green_webhook(context, fake)

    assert result.gate[0].action != "merged" and fake.merge_calls == []


async def test_a_held_issue_keeps_its_reviewed_green_pr_unmerged(
    context: AppContext, fake: FakeGitHub
) -> None:
    await opened(context, fake)
    await verdict(context)
    hold = {"repo": REPO, "issueNumber": 5, "reason": "legal review"}
    data = catalogue.validate("ISSUE_HELD", hold, internal=True)
    await context.store.append(ISSUE, [NewEvent("ISSUE_HELD", data, {"actor": "discord:42"})])

    result = await green_webhook(context, fake)

    decision = result.gate[0]
    assert decision.action != "merged" and fake.merge_calls == []
    held = [c for c in decision.conditions if c.name == "issue not held"]
    assert held and not held[0].ok
    assert held[0].why == f"{ISSUE} is held by discord:42: legal review"


async def test_a_push_after_the_review_waits_for_a_new_review(
    context: AppContext, fake: FakeGitHub
) -> None:
    await opened(context, fake)
    await verdict(context)
    new_head = fake.push_commit(REPO, PR)

    result = await green_webhook(context, fake)

    decision = result.gate[0]
    assert decision.action == "waiting" and fake.merge_calls == []
    review = next(c for c in decision.conditions if c.name == "review")
    assert not review.ok and "older head" in review.why
    # A GitHub approval of the old commit does not count either.
    fake.add_review(REPO, PR, "APPROVED", commit_id="0" * 40)
    assert (await new_gate(context).decide(REPO, PR)).action == "waiting"

    await verdict(context)  # Review-E reviews the new head: the verdict is the trigger

    assert fake.merge_calls == [{"number": PR, "sha": new_head, "merge_method": "squash"}]


async def test_a_github_approval_of_the_head_passes_the_review(
    context: AppContext, fake: FakeGitHub
) -> None:
    await opened(context, fake)
    fake.add_review(REPO, PR, "APPROVED")
    result = await green_webhook(context, fake)
    assert [d.action for d in result.gate] == ["merged"]


@pytest.mark.parametrize(
    ("run", "status", "why"),
    [
        (("in_progress", None), "success", "pending: tests"),
        (("queued", None), "success", "pending: tests"),
        (("completed", "failure"), "success", "failed: tests (failure)"),
        (("completed", "success"), "pending", "pending: ci/build"),
        (("completed", "success"), "error", "failed: ci/build (error)"),
    ],
)
async def test_a_pending_or_failed_check_merges_nothing(
    context: AppContext,
    fake: FakeGitHub,
    run: tuple[str, str | None],
    status: str,
    why: str,
) -> None:
    await opened(context, fake)
    await verdict(context)
    head = fake.head(REPO, PR)
    fake.set_check(REPO, head, "tests", *run)
    fake.set_status(REPO, head, "ci/build", status)

    decision = await new_gate(context).decide(REPO, PR, trigger="check_run")

    checks = next(c for c in decision.conditions if c.name == "checks")
    assert (decision.action, checks.ok, checks.why) == ("waiting", False, why)
    assert fake.merge_calls == []


async def test_a_required_check_that_never_reported_merges_nothing(
    make: Callable[..., AppContext], fake: FakeGitHub
) -> None:
    context = make(CONDUCTOR_MERGE_REQUIRED_CHECKS="tests,deploy-preview")
    await opened(context, fake)
    await verdict(context)
    result = await green_webhook(context, fake)
    assert result.gate[0].action == "waiting"
    assert "deploy-preview (not reported)" in result.gate[0].reason
    assert fake.merge_calls == []


@pytest.mark.parametrize(
    ("setup", "condition", "why"),
    [
        (lambda fake: fake.set_draft(REPO, PR, True), "not a draft", "draft"),
        (lambda fake: fake.set_mergeable(REPO, PR, False), "mergeable", "it has a conflict"),
        (
            lambda fake: fake.set_mergeable(REPO, PR, None),
            "mergeable",
            "GitHub is still computing it",
        ),
        (
            lambda fake: fake.set_pull_labels(REPO, PR, ["Hold"]),
            "no blocking label",
            "labelled Hold",
        ),
    ],
)
async def test_what_blocks_a_merge_is_said(
    context: AppContext, fake: FakeGitHub, setup: Any, condition: str, why: str
) -> None:
    await opened(context, fake)
    await verdict(context)
    setup(fake)

    result = await green_webhook(context, fake)

    decision = result.gate[0]
    failing = [(c.name, c.why) for c in decision.conditions if not c.ok]
    assert decision.action == "waiting" and failing == [(condition, why)]
    assert f"{condition}: {why}" in decision.reason
    assert fake.merge_calls == []


async def test_a_repo_not_opted_in_is_never_merged(
    make: Callable[..., AppContext], fake: FakeGitHub
) -> None:
    context = make(CONDUCTOR_MERGE_REPOS="acme/other")
    await opened(context, fake)
    await verdict(context)
    fake.green(REPO, PR)
    requests = len(fake.requests)

    result = await green_webhook(context, fake, "d-ci-2")

    assert result.gate == [] and fake.merge_calls == []
    assert len(fake.requests) == requests  # not even asked GitHub
    decision = await new_gate(context).decide(REPO, PR)
    assert "repo opted in: acme/api is not in CONDUCTOR_MERGE_REPOS" in decision.reason
    assert fake.merge_calls == []


async def test_merge_off_in_the_repo_file_wins_and_a_pause_stops_it(
    make: Callable[..., AppContext], fake: FakeGitHub
) -> None:
    context = make(CONDUCTOR_MERGE_REPOS="*")
    fake.set_file(REPO, ".rig-agent.yaml", "stack: python\nmerge: off\n")
    await context.store.append(
        f"repo:{REPO}",
        [
            NewEvent(
                "REPO_CONFIG_CHANGED",
                {"repo": REPO, "present": True, "sha": "x", "config": {"merge": "off"}},
            )
        ],
    )
    await opened(context, fake)
    await verdict(context)
    decision = (await green_webhook(context, fake)).gate[0]
    assert "merge: off" in decision.reason and fake.merge_calls == []

    other = make(CONDUCTOR_MERGE_REPOS="*", CONDUCTOR_MANAGED_REPOS="acme/api,acme/web")
    gate = new_gate(other)
    await gate.switch(None, "admin-1", pause=True)
    assert await gate.paused("acme/web") == "paused for every repo by admin-1"
    await gate.switch(None, "admin-1", pause=False)
    assert await gate.paused("acme/web") is None


async def test_five_triggers_at_once_make_one_merge_call(
    context: AppContext, fake: FakeGitHub
) -> None:
    await opened(context, fake)
    await verdict(context)
    fake.green(REPO, PR)
    triggers = ["check_suite", "check_run", "status", "api", "loop"]
    # Two gates, as the bot and the API process would have.
    gates = [
        new_gate(context),
        new_gate(context),
    ]

    decisions = await asyncio.gather(
        *(gates[i % 2].decide(REPO, PR, trigger=t) for i, t in enumerate(triggers))
    )

    assert len(fake.merge_calls) == 1
    assert sorted(d.action for d in decisions).count("merged") == 1
    assert (await types(context)).count("MERGED") == 1


class NeverWaiting(set[str]):
    """A folding register that never folds, as in separate processes."""

    def __contains__(self, item: object) -> bool:
        return False


async def test_the_advisory_lock_alone_gives_one_merge_call(
    context: AppContext, fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.services.merge_gate import gate as merge_gate

    monkeypatch.setattr(merge_gate, "_WAITING", NeverWaiting())
    await opened(context, fake)
    await verdict(context)
    fake.green(REPO, PR)

    decisions = await asyncio.gather(*(new_gate(context).decide(REPO, PR) for _ in range(5)))

    assert sorted(d.action for d in decisions) == ["merged"] + ["recorded"] * 4
    assert len(fake.merge_calls) == 1
    assert (await types(context)).count("MERGED") == 1


async def test_409_is_blocked_once_then_merged_after_the_new_head_is_reviewed_and_green(
    context: AppContext, fake: FakeGitHub
) -> None:
    await opened(context, fake)
    await verdict(context)
    fake.merge_refusals.append((409, "Head branch was modified. Review and try the merge again."))
    first = (await green_webhook(context, fake)).gate[0]
    assert first.action == "blocked" and "409" in first.reason
    blocked = [e for e in await context.store.read_stream(ISSUE) if e.type == "MERGE_BLOCKED"]
    assert [(e.data["status"], e.data["headSha"]) for e in blocked] == [(409, fake.head(REPO, PR))]

    # Another trigger on the same head: GitHub is not asked again (no retry storm).
    again = await new_gate(context).decide(REPO, PR, trigger="status")
    assert again.action == "waiting" and "not refused before" in again.reason
    assert len(fake.merge_calls) == 1
    assert (await types(context)).count("MERGE_BLOCKED") == 1

    new_head = fake.push_commit(REPO, PR)
    waiting = (await green_webhook(context, fake, "d-ci-2")).gate[0]
    assert waiting.action == "waiting" and len(fake.merge_calls) == 1  # not reviewed yet
    await verdict(context)

    assert fake.merge_calls[-1] == {"number": PR, "sha": new_head, "merge_method": "squash"}
    assert (await types(context)).count("MERGED") == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (405, "Pull Request is not mergeable"),
        (422, "Required status check is expected"),
        (403, "Protected branch rules not satisfied"),
    ],
)
async def test_a_refusal_is_recorded_with_its_reason_and_alerted(
    context: AppContext, fake: FakeGitHub, status: int, message: str
) -> None:
    from bot.services.alerts import alert_for

    await opened(context, fake)
    await verdict(context)
    fake.merge_refusals.append((status, message))
    decision = (await green_webhook(context, fake)).gate[0]
    assert decision.action == "blocked" and message in decision.reason
    event = next(e for e in await context.store.read_stream(ISSUE) if e.type == "MERGE_BLOCKED")
    alert = alert_for(event, tasks_channel_id=None, admin_channel_id=7)
    assert alert is not None and message in alert.text and f"{status}" in alert.text


async def test_a_merge_by_a_person_is_recorded_once(context: AppContext, fake: FakeGitHub) -> None:
    await opened(context, fake)
    fake.merge_by_person(REPO, PR)
    hooks = Services.build(context).webhooks
    payload = pull_request_payload("closed", REPO, PR, merged=True)

    result = await hooks.handle("pull_request", "d-closed", payload)

    assert result.appended == [(ISSUE, "MERGED")]
    assert [d.action for d in result.gate] == ["recorded"]
    assert (await types(context)).count("MERGED") == 1
    assert fake.merge_calls == []
    assert (await context.projections.issue(ISSUE)).state == "deploying"


async def test_a_merge_whose_record_was_lost_is_recorded_by_the_next_decision(
    context: AppContext, fake: FakeGitHub
) -> None:
    # The process died between GitHub's 200 and the MERGED append: GitHub says merged.
    await opened(context, fake)
    await verdict(context)
    fake.green(REPO, PR)
    fake.merge_by_person(REPO, PR)  # the merge our lost call made
    assert "MERGED" not in await types(context)

    decisions = [await new_gate(context).decide(REPO, PR, trigger="loop") for _ in range(2)]

    assert [d.action for d in decisions] == ["recorded", "recorded"]
    assert (await types(context)).count("MERGED") == 1


async def test_dry_run_decides_and_merges_nothing(
    make: Callable[..., AppContext], fake: FakeGitHub
) -> None:
    context = make(CONDUCTOR_MERGE_DRY_RUN="true")
    await opened(context, fake)
    await verdict(context)
    decision = (await green_webhook(context, fake)).gate[0]
    assert decision.action == "dry-run" and decision.green
    assert fake.merge_calls == [] and "MERGED" not in await types(context)


async def test_a_pr_that_closes_no_issue_is_left_to_people(
    context: AppContext, fake: FakeGitHub
) -> None:
    await working_issue(context)
    fake.add_pull(REPO, 41, body="A refactor", head_ref="refactor-things")
    fake.green(REPO, 41)
    decision = await new_gate(context).decide(REPO, 41)
    assert decision.action == "unlinked" and "left to people" in decision.reason
    assert fake.merge_calls == []


async def test_the_agents_branch_name_links_a_pr_without_a_closing_reference(
    context: AppContext, fake: FakeGitHub
) -> None:
    await working_issue(context)
    fake.add_pull(REPO, PR, body="", head_ref="dev-e/issue-5-fix-login")
    fake.green(REPO, PR)
    fake.add_review(REPO, PR)

    decision = await new_gate(context).decide(REPO, PR, trigger="pull_request")

    assert decision.action == "merged" and decision.issue_stream == ISSUE
    assert (await context.projections.issue(ISSUE)).pr_number == PR


def test_branch_names() -> None:
    assert branch_issue("issue-12") == 12
    assert branch_issue("dev-e/issue-12-title") == 12
    assert branch_issue("fix/12-title") == 12
    assert branch_issue("issues/7") == 7
    assert branch_issue("feature/login") is None
    assert branch_issue("v2-cleanup") is None


async def test_a_decision_reads_github_in_few_requests(
    context: AppContext, fake: FakeGitHub
) -> None:
    await opened(context, fake)
    await verdict(context)
    fake.green(REPO, PR)
    decision = await new_gate(context).decide(REPO, PR, merge=False)
    # The PR, its reviews, the check runs and the combined status.
    assert (decision.action, decision.requests) == ("ready", 4)


async def test_post_api_merge_asks_the_gate(
    context: AppContext, fake: FakeGitHub, api_client_factory: Any
) -> None:
    await opened(context, fake)
    fake.green(REPO, PR)
    client = await api_client_factory(context)
    body = {"repo": REPO, "prNumber": PR}

    waiting = await client.post("/api/merge", json=body)
    assert waiting.status == 202
    answer = await waiting.json()
    assert answer["gate"] == "waiting" and "not reviewed" in answer["message"]

    fake.add_review(REPO, PR)
    merged = await client.post("/api/merge", json=body)
    assert merged.status == 202 and (await merged.json())["gate"] == "merged"
    assert len(fake.merge_calls) == 1


async def test_the_loop_merges_what_a_missed_webhook_left_waiting(
    context: AppContext, fake: FakeGitHub
) -> None:

    await opened(context, fake)
    await verdict(context)  # not green yet: waiting
    assert fake.merge_calls == []
    fake.green(REPO, PR)  # ...and the check_suite delivery never arrives

    result = await Services.build(context).coordination().run()

    assert fake.merge_calls == [
        {"number": PR, "sha": fake.head(REPO, PR), "merge_method": "squash"}
    ]
    assert f"merge gate: {REPO}#{PR} merged" in result.notes
    assert await new_gate(context).sweep() == []  # nothing followed any more


async def test_the_gate_state_shows_in_issue_show_and_on_the_dashboard_card(
    context: AppContext, fake: FakeGitHub
) -> None:

    await opened(context, fake)
    timeline = await Services.build(context).queries.timeline(ISSUE)
    assert timeline.gate == "merge gate on: merges when reviewed and green (/merge status)"

    await verdict(context)
    fake.merge_refusals.append((405, "Required status check ci/lint is expected"))
    await green_webhook(context, fake)

    timeline = await Services.build(context).queries.timeline(ISSUE)
    assert timeline.gate is not None and timeline.gate.startswith("merge blocked: GitHub 405 on ")
    assert "ci/lint is expected" in timeline.gate
    board = await Services.build(context).dashboard.board()
    cards = [card for column in board.columns for card in column.cards]
    [card] = [card for card in cards if card.issue.stream_id == ISSUE]
    assert card.gate == "merge blocked"


async def test_a_refusal_of_a_merge_that_went_through_is_recorded_as_merged(
    context: AppContext, fake: FakeGitHub
) -> None:
    # GitHub merged, the answer was lost, the retry is told "not mergeable": no false alarm.
    await opened(context, fake)
    await verdict(context)
    fake.on_merge = lambda pull: fake.merge_by_person(REPO, PR)
    fake.merge_refusals.append((405, "Pull Request is not mergeable"))

    decision = (await green_webhook(context, fake)).gate[0]

    assert decision.action == "recorded"
    assert "MERGE_BLOCKED" not in await types(context)
    assert (await types(context)).count("MERGED") == 1
