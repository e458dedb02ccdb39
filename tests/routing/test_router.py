"""The routing table: the runtime's convention, CONDUCTOR_AGENT_ROUTES, the default route."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.services.work.repo_config import ConfigInvalid, parse_config
from bot.services.work.routing import Router, route_key
from bot.settings import ConfigError, load_settings
from store.projections import RepoConfig

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# The runtime's own file (Stig-Johnny/automate-e, .rig-agent.yaml), byte for byte.
RUNTIME_FILE = (
    b"# Rig agent configuration \xe2\x80\x94 tells Conductor-E what this repo needs\n"
    b"stack: node\ntools: []\ntestCommand: npm test\nbuildCommand: npm run build\n"
    b"escalate: []\n"
)


def config(raw: bytes, repo: str = "acme/app") -> RepoConfig:
    parsed = parse_config(raw)
    return RepoConfig(
        repo=repo,
        repo_name=repo,
        present=True,
        config=parsed,
        sha="abc",
        route_key=route_key(parsed),
        error=None,
        error_sha=None,
        changed_at=NOW,
        position=1,
    )


def test_the_runtimes_own_file_parses_to_its_fields() -> None:
    assert parse_config(RUNTIME_FILE) == {
        "stack": "node",
        "tools": [],
        "testCommand": "npm test",
        "buildCommand": "npm run build",
        "escalate": [],
    }


def test_tools_and_escalate_take_a_list_or_comma_separated_text_and_merge_on_off() -> None:
    parsed = parse_config(
        b"stack: iOS\ntools: xcodebuild, swiftlint\nescalate: [requires-macos]\nmerge: on\n"
    )
    assert parsed["stack"] == "ios"
    assert parsed["tools"] == ["xcodebuild", "swiftlint"]
    assert parsed["escalate"] == ["requires-macos"]
    assert parsed["merge"] == "on"  # YAML 1.1 reads a bare `on` as true


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"stack: [python", "not valid YAML at line 1"),
        (b"- python\n", "expected a mapping"),
        (b"", "expected a mapping"),
        (b"tools: [git]\n", "field 'stack': Field required"),
        (b"stack: python\ntestCommand: [1, 2]\n", "field 'testCommand'"),
        (b"stack: python\nmerge: maybe\n", "field 'merge'"),
        (b"stack: 'no spaces allowed'\n", "field 'stack'"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_broken_file_says_why_in_one_line(raw: bytes, says: str) -> None:
    with pytest.raises(ConfigInvalid) as raised:
        parse_config(raw)
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_convention_routes_each_stack_to_dev_e_stack() -> None:
    router = Router({}, None)
    route = router.route(config(RUNTIME_FILE))
    assert (route.key, route.agents) == ("node", ("dev-e-node",))
    assert router.scope("dev-e-node").keys == ("node",)
    assert router.scope("dev-e-python").keys == ("python",)


def test_ios_needing_macos_goes_to_ibuild_e_and_plain_ios_to_dev_e_ios() -> None:
    router = Router({}, None)
    macos = router.route(config(b"stack: ios\nescalate: [requires-macos]\n"))
    assert (macos.key, macos.agents) == ("ios-macos", ("ibuild-e",))
    plain = router.route(config(b"stack: ios\n"))
    assert plain.agents == ("dev-e-ios",)
    assert router.scope("ibuild-e").keys == ("ios-macos",)
    assert "ios-macos" not in router.scope("dev-e-ios").keys


def test_the_routes_setting_overrides_the_convention() -> None:
    settings = load_settings(
        {"CONDUCTOR_AGENT_ROUTES": "python=dev-e-python,node=dev-e-node|dev-e-node-2"}
    )
    router = Router.from_settings(settings)
    assert router.route(config(RUNTIME_FILE)).agents == ("dev-e-node", "dev-e-node-2")
    assert router.scope("dev-e-node-2").keys == ("node",)
    # The convention no longer applies to a route the setting names.
    assert Router({"node": ("node-worker",)}, None).scope("dev-e-node").keys == ()


def test_without_a_file_any_agent_may_take_it_unless_a_default_stack_is_set() -> None:
    anyone = Router({}, None)
    assert anyone.route(None).agents is None
    assert anyone.route(None).admits("whoever")
    assert anyone.scope("dev-e-1").unrouted
    assert anyone.scope("dev-e-node").unrouted

    python = Router({}, "python")
    route = python.route(None)
    assert (route.key, route.agents) == ("python", ("dev-e-python",))
    assert python.scope("dev-e-python").unrouted
    assert not python.scope("dev-e-node").unrouted


def test_pull_requests_go_to_review_e_and_reviewers_can_be_named() -> None:
    assert Router({}, None).review_route().agents == ("review-e",)
    assert Router({}, None).may_review("review-e-1")  # today's reviewers keep working
    named = Router({"review": ("review-e",)}, None)
    assert named.may_review("review-e")
    assert not named.may_review("dev-e-node")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("python", "route=agent|agent pairs"),
        ("python=", "route=agent|agent pairs"),
        ("py thon=dev-e", "route 'py thon' is not a stack name"),
        ("python=dev e", "'dev e' is not a valid agent id"),
        ("python=|", "route 'python' names no agent"),
    ],
)
def test_a_bad_routes_setting_is_one_line_naming_it(value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"CONDUCTOR_AGENT_ROUTES": value})
    message = str(raised.value)
    assert message.startswith("configuration error: CONDUCTOR_AGENT_ROUTES: ")
    assert says in message
    assert "\n" not in message


def test_a_bad_default_stack_is_refused() -> None:
    with pytest.raises(ConfigError, match="CONDUCTOR_DEFAULT_STACK"):
        load_settings({"CONDUCTOR_DEFAULT_STACK": "not a stack"})
    assert load_settings({"CONDUCTOR_DEFAULT_STACK": "Python"}).default_stack == "python"
