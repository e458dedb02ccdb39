"""`.rig-agent.yaml` through the real gidgethub client and the fake's contents API: first read,
free re-reads, broken files, removals, the push webhook, and the projection's rebuild."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.context import AppContext
from bot.integrations.github import GitHubClient
from bot.services.work.repo_config import CONFIG_PATH, RepoConfigService
from bot.settings import Settings
from bot.wiring import Services
from store.database import connect
from store.projections import projection_snapshot, rebuild_projections
from tests.fakes.github import FakeGitHub, issues_payload, push_payload

REPO = "acme/api"
NODE = "stack: node\ntools: [git, gh]\ntestCommand: npm test\nbuildCommand: npm run build\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(
    github_context: Callable[..., AppContext],
    make_settings: Callable[..., Settings],
    make_client: Callable[..., GitHubClient],
) -> tuple[AppContext, GitHubClient, RepoConfigService, Clock]:
    context = github_context()
    client = make_client(make_settings())
    clock = Clock()
    return context, client, RepoConfigService(context, client, clock=clock), clock


async def config_events(context: AppContext) -> list[tuple[str, dict]]:
    found = await context.store.read_all(
        0, 100, types=["REPO_CONFIG_CHANGED", "REPO_CONFIG_INVALID"]
    )
    return [(e.type, e.data) for e in found]


async def test_the_first_read_records_the_config_and_an_unchanged_reread_is_a_free_304(
    fake: FakeGitHub, setup: tuple[AppContext, GitHubClient, RepoConfigService, Clock]
) -> None:
    context, _client, service, _ = setup
    sha = fake.set_file(REPO, CONFIG_PATH, NODE)

    first = await service.refresh([REPO])
    assert first.changed == [REPO]
    [(kind, data)] = await config_events(context)
    assert kind == "REPO_CONFIG_CHANGED"
    assert data["sha"] == sha
    assert data["routeKey"] == "node"
    assert data["config"]["tools"] == ["git", "gh"]
    row = await context.projections.repo_config(REPO)
    assert row is not None and row.route_key == "node" and row.present and row.error is None

    used = fake.windows["core"].used
    again = await service.refresh([REPO])
    assert again.changed == [] and again.unchanged == 1
    last = fake.contents_requests()[-1]
    assert last.status == 304
    assert last.headers["if-none-match"]  # conditional, from gidgethub's ETag cache
    assert fake.windows["core"].used == used  # a 304 is not counted against the rate limit
    assert len(await config_events(context)) == 1


async def test_a_broken_file_is_reported_once_and_the_last_good_config_stays(
    fake: FakeGitHub, setup: tuple[AppContext, GitHubClient, RepoConfigService, Clock]
) -> None:
    context, _, service, _ = setup
    fake.set_file(REPO, CONFIG_PATH, NODE)
    await service.refresh([REPO])

    broken_sha = fake.set_file(REPO, CONFIG_PATH, "stack: [python\n")
    result = await service.refresh([REPO])
    assert result.invalid == [REPO]
    row = await context.projections.repo_config(REPO)
    assert row is not None
    assert row.route_key == "node"  # still routed by the last good file
    assert row.config is not None and row.config["stack"] == "node"
    assert row.error is not None and row.error.startswith("not valid YAML at line 2")
    assert row.error_sha == broken_sha

    assert (await service.refresh([REPO])).invalid == []  # the same broken file: said once
    assert [k for k, _ in await config_events(context)] == [
        "REPO_CONFIG_CHANGED",
        "REPO_CONFIG_INVALID",
    ]

    fake.set_file(REPO, CONFIG_PATH, "stack: python\n")
    assert (await service.refresh([REPO])).changed == [REPO]
    row = await context.projections.repo_config(REPO)
    assert row is not None and row.route_key == "python" and row.error is None


async def test_no_file_is_the_default_route_and_a_removed_file_is_recorded(
    fake: FakeGitHub, setup: tuple[AppContext, GitHubClient, RepoConfigService, Clock]
) -> None:
    context, _, service, clock = setup
    result = await service.refresh([REPO])
    assert result.read == 1 and result.changed == []
    assert await context.projections.repo_config(REPO) is None  # nothing to record
    assert fake.contents_requests()[-1].status == 404

    # GitHub sends no ETag with a 404: a repo without a file is re-read once an hour only.
    assert (await service.refresh([REPO])).skipped == 1
    assert len(fake.contents_requests()) == 1
    clock.now += 3601
    assert (await service.refresh([REPO])).read == 1

    fake.set_file(REPO, CONFIG_PATH, NODE)
    assert (await service.refresh([REPO], force=True)).changed == [REPO]
    fake.delete_file(REPO, CONFIG_PATH)
    assert (await service.refresh([REPO])).changed == [REPO]
    row = await context.projections.repo_config(REPO)
    assert row is not None and not row.present and row.route_key is None


async def test_a_repo_that_cannot_be_read_keeps_its_config_and_says_why(
    fake: FakeGitHub, setup: tuple[AppContext, GitHubClient, RepoConfigService, Clock]
) -> None:
    context, _, service, _ = setup
    fake.set_file(REPO, CONFIG_PATH, NODE)
    await service.refresh([REPO])
    fake.fail(403, times=1, path=f"/repos/{REPO}/contents")
    result = await service.refresh([REPO])
    assert result.errors and result.errors[0].startswith(f"{REPO}: ")
    assert "ghp_" not in result.errors[0]
    row = await context.projections.repo_config(REPO)
    assert row is not None and row.route_key == "node"


async def test_a_push_touching_the_file_on_the_default_branch_rereads_it(
    fake: FakeGitHub, github_context: Callable[..., AppContext]
) -> None:
    context = github_context()
    service = Services.build(context).webhooks
    fake.set_file(REPO, CONFIG_PATH, NODE)

    untouched = push_payload(REPO, modified=["README.md"])
    assert (await service.handle("push", "d-1", untouched)).appended == []
    other_branch = push_payload(REPO, ref="refs/heads/feature", modified=[CONFIG_PATH])
    assert (await service.handle("push", "d-2", other_branch)).appended == []
    assert fake.contents_requests() == []

    touched = push_payload(REPO, added=[CONFIG_PATH])
    result = await service.handle("push", "d-3", touched)
    assert result.appended == [(f"repo:{REPO}", "REPO_CONFIG_CHANGED")]

    fake.set_file(REPO, CONFIG_PATH, "stack: 3\n")
    result = await service.handle("push", "d-4", push_payload(REPO, modified=[CONFIG_PATH]))
    assert result.appended == [(f"repo:{REPO}", "REPO_CONFIG_INVALID")]

    # Twenty commits may hide the file (GitHub lists at most twenty): read it to be sure.
    fake.set_file(REPO, CONFIG_PATH, "stack: python\n")
    result = await service.handle("push", "d-5", push_payload(REPO, commits=20))
    assert result.appended == [(f"repo:{REPO}", "REPO_CONFIG_CHANGED")]


async def test_an_issue_approved_in_a_new_repo_is_routed_from_its_first_claim(
    fake: FakeGitHub, github_context: Callable[..., AppContext]
) -> None:
    context = github_context()
    fake.set_file(REPO, CONFIG_PATH, NODE)
    payload = issues_payload("labeled", REPO, 7, labels=["agent-ready"], label="agent-ready")
    result = await Services.build(context).webhooks.handle("issues", "d-9", payload)
    assert result.appended[0] == (f"repo:{REPO}", "REPO_CONFIG_CHANGED")
    assert (f"{REPO}#7", "ISSUE_APPROVED") in result.appended
    # The configuration was recorded before the approval: no agent could claim it unrouted.
    events = await context.store.read_all(0, 10)
    assert [e.type for e in events] == ["REPO_CONFIG_CHANGED", "ISSUE_APPROVED"]
    assert await context.store.claim("issue", "dev-e-1", {}, route_keys=(), unrouted=True) is None
    claim = await context.store.claim("issue", "dev-e-node", {}, route_keys=("node",))
    assert claim is not None and claim.stream_id == f"{REPO}#7"


async def test_the_projection_rebuilds_to_the_same_rows(
    fake: FakeGitHub,
    setup: tuple[AppContext, GitHubClient, RepoConfigService, Clock],
    database_url: str,
) -> None:
    _context, _, service, _ = setup
    fake.set_file(REPO, CONFIG_PATH, NODE)
    fake.set_file("acme/web", CONFIG_PATH, "stack: ios\nescalate: requires-macos\n")
    await service.refresh([REPO, "acme/web"])
    fake.set_file(REPO, CONFIG_PATH, "{{")
    await service.refresh([REPO])
    conn = await connect(database_url)
    try:
        before = await projection_snapshot(conn)
        assert len(before["repo_configs"]) == 2
        await rebuild_projections(conn)
        assert await projection_snapshot(conn) == before
    finally:
        await conn.close()
