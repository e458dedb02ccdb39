"""Webhooks: signatures as GitHub signs them, the mapping of each event, and once-only appends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.context import AppContext
from bot.integrations.webhook_router import Event
from bot.services.github import hooks
from bot.services.github.hooks import Mapped, read_delivery
from bot.services.github.webhooks import verify_signature
from bot.services.work.pull_requests import closing_references
from bot.settings import Settings
from bot.wiring import Services
from store.events import NewEvent
from tests.fakes.github import (
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
from tests.github.conftest import SECRET

READY = "agent-ready"
REPO = "acme/api"


# --- signatures -----------------------------------------------------------------------------------


def test_a_signature_made_like_github_verifies() -> None:
    body = encode(issues_payload("labeled", REPO, 1, labels=[READY], label=READY))
    headers = delivery_headers("issues", body, SECRET)
    assert headers["X-Hub-Signature-256"].startswith("sha256=")
    assert verify_signature(SECRET, body, headers["X-Hub-Signature-256"])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha256=" + "0" * 64,
        sign(b"another-secret", b'{"zen":"x"}'),
        sign(SECRET, b'{"zen":"x"}').removeprefix("sha256="),  # no prefix
        sign(SECRET, b'{"zen":"x"}').replace("sha256=", "sha1="),
    ],
)
def test_a_bad_or_missing_signature_fails(header: str | None) -> None:
    assert not verify_signature(SECRET, b'{"zen":"x"}', header)


def test_a_tampered_body_fails() -> None:
    header = sign(SECRET, b'{"action":"labeled"}')
    assert not verify_signature(SECRET, b'{"action":"unlabeled"}', header)


def test_an_empty_secret_verifies_nothing() -> None:
    assert not verify_signature(b"", b"{}", sign(b"", b"{}"))


# --- mapping --------------------------------------------------------------------------------------


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(CONDUCTOR_MANAGED_REPOS=REPO)


def kinds(mapped: list[tuple[str, NewEvent]]) -> list[tuple[str, str]]:
    return [(stream, event.type) for stream, event in mapped]


async def events_for_delivery(
    event_name: str, payload: Any, settings: Settings, **kw: Any
) -> list[Mapped]:
    return (await read_delivery(event_name, payload, settings, **kw)).events


def test_closing_references() -> None:
    body = "Closes #12, fixes: #13 and Resolves acme/web#4. Mentions #99. closes #12 again"
    assert closing_references(body, REPO) == [(REPO, 12), (REPO, 13), ("acme/web", 4)]
    assert closing_references(None, REPO) == []


async def test_issue_labelled_agent_ready_is_approved(settings: Settings) -> None:
    payload = issues_payload("labeled", REPO, 5, labels=[READY, "P1"], label=READY, title="T")
    mapped = await events_for_delivery("issues", payload, settings)
    assert kinds(mapped) == [("acme/api#5", "ISSUE_APPROVED")]
    event = mapped[0][1]
    assert event.data == {
        "repo": REPO,
        "issueNumber": 5,
        "title": "T",
        "url": "https://github.com/acme/api/issues/5",
        "labels": [READY, "P1"],
        "priority": "high",
    }
    assert event.metadata["source"] == "github-webhook"


@pytest.mark.parametrize(
    ("action", "labels", "label", "expected"),
    [
        ("unlabeled", [], READY, "ISSUE_WITHDRAWN"),
        ("closed", [READY], None, "ISSUE_WITHDRAWN"),
        ("reopened", [READY], None, "ISSUE_APPROVED"),
        ("opened", [READY], None, "ISSUE_APPROVED"),
        ("labeled", [READY, "P0"], "P0", "PRIORITY_CHANGED"),
        ("unlabeled", [READY], "P0", "PRIORITY_CHANGED"),
    ],
)
async def test_issue_events(
    settings: Settings, action: str, labels: list[str], label: str | None, expected: str
) -> None:
    payload = issues_payload(action, REPO, 5, labels=labels, label=label)
    assert kinds(await events_for_delivery("issues", payload, settings)) == [
        ("acme/api#5", expected)
    ]


@pytest.mark.parametrize(
    ("action", "labels", "label"),
    [
        ("labeled", ["bug"], "bug"),  # another label on an issue that is not agent-ready
        ("reopened", ["bug"], None),  # reopened without the label
        ("opened", [], None),
        ("edited", [READY], None),
    ],
)
async def test_issue_events_that_imply_nothing(
    settings: Settings, action: str, labels: list[str], label: str | None
) -> None:
    payload = issues_payload(action, REPO, 5, labels=labels, label=label)
    assert await events_for_delivery("issues", payload, settings) == []


async def test_an_unmanaged_repo_is_ignored(settings: Settings) -> None:
    payload = issues_payload("labeled", "stranger/repo", 5, labels=[READY], label=READY)
    assert await events_for_delivery("issues", payload, settings) == []


async def test_pull_request_opened_with_a_closing_reference(settings: Settings) -> None:
    payload = pull_request_payload("opened", REPO, 40, body="Implements it.\n\nCloses #5")
    mapped = await events_for_delivery("pull_request", payload, settings)
    assert kinds(mapped) == [("acme/api#5", "PR_CREATED")]
    assert mapped[0][1].data == {
        "repo": REPO,
        "issueNumber": 5,
        "prNumber": 40,
        "url": "https://github.com/acme/api/pull/40",
    }
    no_ref = pull_request_payload("opened", REPO, 41, body="Refactor only.")
    assert await events_for_delivery("pull_request", no_ref, settings) == []


async def test_pull_request_merged_and_closed_unmerged(settings: Settings) -> None:
    merged = pull_request_payload("closed", REPO, 40, body="Fixes #5", merged=True)
    assert kinds(await events_for_delivery("pull_request", merged, settings)) == [
        ("acme/api#5", "MERGED")
    ]
    # Without a reference in the body, the projection's link from PR to issue is used.
    bare = pull_request_payload("closed", REPO, 41, merged=True)
    assert kinds(
        await events_for_delivery("pull_request", bare, settings, pr_issues={41: [6]})
    ) == [("acme/api#6", "MERGED")]
    unmerged = pull_request_payload("closed", REPO, 40, body="Fixes #5", merged=False)
    assert await events_for_delivery("pull_request", unmerged, settings) == []


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("approved", ["REVIEW_PASSED"]),
        ("changes_requested", ["REVIEW_DISPUTED"]),
        ("commented", []),
    ],
)
async def test_pull_request_review(settings: Settings, state: str, expected: list[str]) -> None:
    payload = pull_request_review_payload(REPO, 40, state, body="Closes #5")
    mapped = await events_for_delivery("pull_request_review", payload, settings)
    assert [event.type for _, event in mapped] == expected
    assert all(stream == "acme/api#5" for stream, _ in mapped)


@pytest.mark.parametrize(
    ("event", "conclusion", "expected"),
    [
        ("check_suite", "success", ["CI_PASSED"]),
        ("check_suite", "failure", ["CI_FAILED"]),
        ("check_suite", "timed_out", ["CI_FAILED"]),
        ("check_suite", "neutral", []),
        ("check_suite", "cancelled", []),
        ("check_run", "failure", ["CI_FAILED"]),
        ("check_run", "success", []),  # one run passing is not CI passing
    ],
)
async def test_checks(settings: Settings, event: str, conclusion: str, expected: list[str]) -> None:
    build = check_suite_payload if event == "check_suite" else check_run_payload
    payload = build(REPO, conclusion, [40])
    mapped = await events_for_delivery(event, payload, settings, pr_issues={40: [5]})
    assert [e.type for _, e in mapped] == expected
    assert all(stream == "acme/api#5" and e.data["prNumber"] == 40 for stream, e in mapped)
    # With no issue known for the PR, a check maps to nothing.
    assert await events_for_delivery(event, payload, settings) == []


async def test_ping_maps_to_nothing(settings: Settings) -> None:
    assert await events_for_delivery("ping", ping_payload(), settings) == []


async def test_an_action_that_is_not_a_string_matches_no_hook(settings: Settings) -> None:
    issue = issues_payload("labeled", REPO, 5, labels=[READY], label=READY)
    suite = check_suite_payload(REPO, "failure", [40])
    for event, payload in (("issues", issue), ("check_suite", suite)):
        for action in (["labeled"], {"completed": True}, 7):
            bent = {**payload, "action": action}
            assert await events_for_delivery(event, bent, settings, pr_issues={40: [5]}) == []


@pytest.mark.parametrize(
    ("push", "expected"),
    [
        ({"modified": [".rig-agent.yaml"]}, [REPO]),
        ({"removed": [".rig-agent.yaml"], "commits": 2}, [REPO]),
        ({"added": ["README.md"], "commits": 20}, [REPO]),  # GitHub lists 20 at most
        ({"added": ["README.md"]}, []),
        ({"modified": [".rig-agent.yaml"], "ref": "refs/heads/dev"}, []),
    ],
)
async def test_a_push_to_the_default_branch_touching_the_config_has_it_read(
    settings: Settings, push: dict[str, Any], expected: list[str]
) -> None:
    delivery = await read_delivery("push", push_payload(REPO, **push), settings)
    assert delivery.configs == expected and delivery.events == []


def test_each_delivery_reaches_at_most_one_hook() -> None:
    """A delivery's events are keyed by their index (`delivery:<id>:<index>`), so their order
    must not depend on the order in which gidgethub calls the hooks it found."""
    names = ["issues", "pull_request", "pull_request_review", "check_suite", "check_run", "push"]
    actions = [None, "opened", "reopened", "closed", "labeled", "unlabeled", "deleted"]
    actions += ["transferred", "edited", "submitted", "completed", "synchronize"]
    for router in (hooks.router, hooks.issues.by_action):
        for name in names:
            for action in actions:
                event = Event(
                    {} if action is None else {"action": action}, event=name, delivery_id=""
                )
                assert len(router.fetch(event)) <= 1, (name, action)


# --- the service ----------------------------------------------------------------------------------


@pytest.fixture
def context(github_context: Callable[..., AppContext]) -> AppContext:
    return github_context(CONDUCTOR_MANAGED_REPOS=REPO)


async def test_a_redelivery_appends_nothing_new(context: AppContext) -> None:
    hooks = Services.build(context).webhooks
    payload = issues_payload("labeled", REPO, 5, labels=[READY], label=READY)
    first = await hooks.handle("issues", "delivery-1", payload)
    assert first.appended == [("acme/api#5", "ISSUE_APPROVED")]
    head = await context.store.head_position()

    again = await hooks.handle("issues", "delivery-1", payload)

    assert again.appended == []
    assert await context.store.head_position() == head
    stored = await context.store.read_stream("acme/api#5")
    assert stored[0].metadata["deliveryId"] == "delivery-1"
    assert (await context.projections.issue("acme/api#5")).state == "queued"


async def test_a_late_redelivery_does_not_undo_what_came_after(context: AppContext) -> None:
    # GitHub lets a person redeliver an old delivery; only its id tells it apart.
    hooks = Services.build(context).webhooks
    labeled = issues_payload("labeled", REPO, 5, labels=[READY], label=READY)
    await hooks.handle("issues", "d-label", labeled)
    await hooks.handle("issues", "d-unlabel", issues_payload("unlabeled", REPO, 5, label=READY))
    head = await context.store.head_position()

    redelivered = await hooks.handle("issues", "d-label", labeled)

    assert redelivered.appended == [] and redelivered.duplicates == 1
    assert await context.store.head_position() == head
    assert (await context.projections.issue("acme/api#5")).state == "withdrawn"


async def test_the_same_event_under_another_delivery_id_is_a_duplicate_by_state(
    context: AppContext,
) -> None:
    hooks = Services.build(context).webhooks
    payload = issues_payload("labeled", REPO, 5, labels=[READY], label=READY)
    await hooks.handle("issues", "d-1", payload)
    second = await hooks.handle("issues", "d-2", payload)  # GitHub sent labeled twice
    assert second.appended == [] and second.skipped == 1


async def test_issue_lifecycle_through_webhooks(context: AppContext) -> None:
    hooks = Services.build(context).webhooks
    await hooks.handle(
        "issues", "d1", issues_payload("labeled", REPO, 5, labels=[READY], label=READY)
    )
    await hooks.handle("issues", "d2", issues_payload("unlabeled", REPO, 5, label=READY))
    assert (await context.projections.issue("acme/api#5")).state == "withdrawn"
    await hooks.handle(
        "issues", "d3", issues_payload("labeled", REPO, 5, labels=[READY], label=READY)
    )
    assert (await context.projections.issue("acme/api#5")).state == "queued"

    await context.store.append(
        "acme/api#5",
        [NewEvent("ISSUE_ASSIGNED", {"repo": REPO, "issueNumber": 5, "agentId": "dev-e"})],
    )
    opened = await hooks.handle(
        "pull_request", "d4", pull_request_payload("opened", REPO, 40, body="Closes #5")
    )
    assert opened.appended == [("acme/api#5", "PR_CREATED")]
    issue = await context.projections.issue("acme/api#5")
    assert (issue.state, issue.pr_number) == ("in_review", 40)

    # CI: the check suite names only the PR; the projection says which issue it serves.
    ci = await hooks.handle("check_suite", "d5", check_suite_payload(REPO, "failure", [40]))
    assert ci.appended == [("acme/api#5", "CI_FAILED")]
    assert (await context.projections.issue("acme/api#5")).state == "in_progress"

    review = await hooks.handle(
        "pull_request_review", "d6", pull_request_review_payload(REPO, 40, "approved")
    )
    assert review.appended == [("acme/api#5", "REVIEW_PASSED")]

    merged = await hooks.handle(
        "pull_request", "d7", pull_request_payload("closed", REPO, 40, merged=True)
    )
    assert merged.appended == [("acme/api#5", "MERGED")]
    assert (await context.projections.issue("acme/api#5")).state == "deploying"

    # GitHub closes the issue when the PR merges: that is no withdrawal.
    closed = await hooks.handle("issues", "d8", issues_payload("closed", REPO, 5, labels=[READY]))
    assert closed.appended == [] and closed.skipped == 1
    assert (await context.projections.issue("acme/api#5")).state == "deploying"


async def test_a_queued_issue_closed_on_github_is_withdrawn(context: AppContext) -> None:
    hooks = Services.build(context).webhooks
    await hooks.handle(
        "issues", "d1", issues_payload("labeled", REPO, 5, labels=[READY], label=READY)
    )
    closed = await hooks.handle("issues", "d2", issues_payload("closed", REPO, 5, labels=[READY]))
    assert closed.appended == [("acme/api#5", "ISSUE_WITHDRAWN")]


async def test_events_about_unknown_issues_add_nothing(context: AppContext) -> None:
    hooks = Services.build(context).webhooks
    results = [
        await hooks.handle(
            "pull_request", "d1", pull_request_payload("opened", REPO, 40, body="Fixes #77")
        ),
        await hooks.handle("issues", "d2", issues_payload("closed", REPO, 78)),
        await hooks.handle("check_suite", "d3", check_suite_payload(REPO, "success", [40])),
        await hooks.handle("ping", "d4", ping_payload()),
    ]
    assert all(r.appended == [] for r in results)
    assert await context.store.head_position() == 0


async def test_a_priority_label_through_a_webhook(context: AppContext) -> None:
    hooks = Services.build(context).webhooks
    await hooks.handle(
        "issues", "d1", issues_payload("labeled", REPO, 5, labels=[READY], label=READY)
    )
    result = await hooks.handle(
        "issues", "d2", issues_payload("labeled", REPO, 5, labels=[READY, "P0"], label="P0")
    )
    assert result.appended == [("acme/api#5", "PRIORITY_CHANGED")]
    assert (await context.projections.issue("acme/api#5")).priority == "critical"
