"""The `conductor-e` command as a user runs it: real processes, the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import select
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from store.database import with_database
from store.migrations import available_migrations
from tests.waiting import wait_until_blocking

COMMAND = [sys.executable, "-m", "bot"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment() -> dict[str, str]:
    """This process's environment without any Conductor-E setting or secret, so a spawned
    process sees only what a test gives it."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CONDUCTOR_", "DISCORD_", "ANTHROPIC_", "GITHUB_"))
        and key not in ("DATABASE_URL", "VALKEY_PASSWORD")
    }


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: embedded PostgreSQL under tmp_path, API on a free port."""
    os.chmod(tmp_path, 0o755)  # the embedded server runs as its own user when we are root
    env = clean_environment()
    env.update(
        CONDUCTOR_DATA_DIR=str(tmp_path / "data"),
        CONDUCTOR_HTTP_HOST="127.0.0.1",
        CONDUCTOR_HTTP_PORT=str(free_port()),
    )
    return env


def http(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def wait_until_up(base: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    def health() -> int | None:
        if process.poll() is not None:
            raise AssertionError(f"conductor-e exited early:\n{process.stderr.read()}")  # type: ignore[union-attr]
        try:
            return http("GET", f"{base}/health")[0]
        except OSError:
            return None

    wait_until_blocking(
        health,
        ok=lambda status: status == 200,
        timeout=timeout,
        what="conductor-e to answer /health",
        interval=0.1,
    )


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal a process, wait for it, and return its exit code and stderr (pipes closed)."""
    if process.poll() is None:
        process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    return process.returncode, stderr


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture
def running(cli_env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = spawn(["run"], cli_env)
    base = f"http://127.0.0.1:{cli_env['CONDUCTOR_HTTP_PORT']}"
    try:
        wait_until_up(base, process)
        yield base, process
    finally:
        stop(process)


def test_help_for_every_command(cli_env: dict[str, str]) -> None:
    for args in (
        [],
        ["run"],
        ["api"],
        ["bot"],
        ["migrate"],
        ["projections", "rebuild"],
        ["events", "tail"],
        ["coordinate"],
    ):
        result = subprocess.run(
            [*COMMAND, *args, "--help"], env=cli_env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, (args, result.stderr)
        assert "usage: conductor-e" in result.stdout


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("CONDUCTOR_HTTP_PORT", "eighty", "CONDUCTOR_HTTP_PORT"),
        ("DATABASE_URL", "mysql://admin:hunter2-secret@db/x", "DATABASE_URL"),
        ("CONDUCTOR_API_TOKENS", "dev-e-1=tiny7", "CONDUCTOR_API_TOKENS"),
        ("CONDUCTOR_MANAGED_REPOS", "not-a-repo", "CONDUCTOR_MANAGED_REPOS"),
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line(
    cli_env: dict[str, str], name: str, value: str, needle: str
) -> None:
    result = subprocess.run(
        [*COMMAND, "run"], env={**cli_env, name: value}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "hunter2" not in result.stderr and "tiny7" not in result.stderr


def test_run_serves_logs_each_component_and_stops_cleanly(
    cli_env: dict[str, str], running: tuple[str, subprocess.Popen[str]]
) -> None:
    base, process = running
    status, body = http(
        "POST", f"{base}/api/events", {"type": "HEARTBEAT", "agentId": "dev-e-1", "status": "idle"}
    )
    assert status == 200, body
    code, log = stop(process)
    assert code == 0, log
    for line in (
        "database: embedded PostgreSQL ready",
        "api: listening on 127.0.0.1",
        "bot: off (DISCORD_BOT_TOKEN is not set)",
        "loop: off (neither GITHUB_TOKEN nor DISCORD_WEBHOOK_URL is set)",
        "dispatch: off (CONDUCTOR_VALKEY_URL is not set; agents pull their work)",
        "api: stopped",
        "database: embedded PostgreSQL stopped",
    ):
        assert line in log, log

    # Events survive a restart: the data lives under CONDUCTOR_DATA_DIR.
    again = spawn(["api"], cli_env)
    try:
        wait_until_up(base, again)
        status, agents = http("GET", f"{base}/api/agents")
        assert [a["agentId"] for a in agents["agents"]] == ["dev-e-1"]
    finally:
        code, log = stop(again, signal.SIGINT)
    assert code == 0, log


def test_events_tail_prints_new_events(
    cli_env: dict[str, str], running: tuple[str, subprocess.Popen[str]]
) -> None:
    base, _ = running
    tail = spawn(["events", "tail"], cli_env)
    try:
        # Keep appending until tail has printed one: it needs a moment to start listening.
        def printed() -> str:
            http(
                "POST",
                f"{base}/api/events",
                {"type": "HEARTBEAT", "agentId": "dev-e-7", "status": "working"},
            )
            ready, _, _ = select.select([tail.stdout], [], [], 0.5)
            return tail.stdout.readline() if ready else ""  # type: ignore[union-attr]

        line = wait_until_blocking(
            printed, timeout=60, what="`events tail` to print an event", interval=0
        )
        event = json.loads(line)
        assert event["type"] == "HEARTBEAT"
        assert event["streamId"] == "dev-e-7"
        assert event["data"]["status"] == "working"
    finally:
        code, log = stop(tail, signal.SIGINT)
    assert code == 0, log


def test_migrate_and_rebuild_report_what_they_did(cli_env: dict[str, str]) -> None:
    migrate = subprocess.run(
        [*COMMAND, "migrate"], env=cli_env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "schema is up to date" in migrate.stdout
    rebuild = subprocess.run(
        [*COMMAND, "projections", "rebuild"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rebuild.returncode == 0, rebuild.stderr
    assert "rebuilt the projections from 0 events" in rebuild.stderr


def test_run_starts_the_loop_when_its_tokens_are_set_and_no_bot_hosts_it(
    cli_env: dict[str, str],
) -> None:
    env = {
        **cli_env,
        "GITHUB_TOKEN": "ghp_not_a_real_token_0000",
        # Nothing listens there: each run fails on GitHub, and says so in its record.
        "CONDUCTOR_GITHUB_API_URL": f"http://127.0.0.1:{free_port()}",
        "CONDUCTOR_MANAGED_REPOS": "acme/app",
        "CONDUCTOR_LOOP_INTERVAL_SECONDS": "0.5",
    }
    process = spawn(["run"], env)
    base = f"http://127.0.0.1:{cli_env['CONDUCTOR_HTTP_PORT']}"
    try:
        wait_until_up(base, process)
        runs = wait_until_blocking(
            lambda: http("GET", f"{base}/api/events?type=COORDINATION_RUN_FAILED")[1]["events"],
            ok=lambda runs: len(runs) >= 2,
            timeout=60,
            what="the loop to run twice",
            interval=0.2,
        )
        assert "GitHub" in runs[0]["data"]["error"]
    finally:
        code, log = stop(process)
    assert code == 0, log
    assert "loop: every 0.5s" in log
    assert "ghp_not_a_real_token_0000" not in log


def test_coordinate_once_migrates_a_fresh_embedded_database(cli_env: dict[str, str]) -> None:
    # The embedded server is the process's own: every command migrates it, as `run` does.
    result = subprocess.run(
        [*COMMAND, "coordinate", "--once"], env=cli_env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("coordination ok"), result.stdout
    migrations = len(available_migrations())
    assert f"schema up to date ({migrations} migration(s) applied)" in result.stderr


def test_an_external_database_behind_is_refused_with_how_to_migrate(
    cli_env: dict[str, str], pg_server_dsn: str
) -> None:
    name = f"unmigrated_cli_{os.getpid()}"
    dsn = with_database(pg_server_dsn, name)

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_server_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def tables() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return [row["tablename"] for row in rows]
        finally:
            await conn.close()

    asyncio.run(admin(f"DROP DATABASE IF EXISTS {name}"))
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        for args in (["coordinate", "--once"], ["projections", "rebuild"]):
            result = subprocess.run(
                [*COMMAND, *args],
                env={**cli_env, "DATABASE_URL": dsn},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 1, (args, result.stderr)
            assert "the database schema is at version 0" in result.stderr
            assert "run `conductor-e migrate` with the same DATABASE_URL" in result.stderr
            assert "Helm chart's migration hook" in result.stderr
        # The chart's hook owns an external schema: the refusal changed nothing.
        assert asyncio.run(tables()) == []
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_a_dsn_that_does_not_parse_is_not_quoted_in_the_log() -> None:
    # A password holding "#" ends the URL's netloc early: urlsplit's error quotes the rest.
    from bot.__main__ import describe_dsn

    where = describe_dsn("postgresql://conductor:s3cr#et@db:5432/conductor")
    assert "s3cr" not in where and "et@db" not in where
    assert describe_dsn("postgresql://conductor:pw@db:5432/conductor") == "db:5432/conductor"


def test_bot_without_its_token_says_so_at_once(cli_env: dict[str, str]) -> None:
    """`conductor-e bot` with no DISCORD_BOT_TOKEN used to start PostgreSQL and idle forever."""
    env = {k: v for k, v in cli_env.items() if k != "DISCORD_BOT_TOKEN"}
    result = subprocess.run([*COMMAND, "bot"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "DISCORD_BOT_TOKEN is not set" in line and "conductor-e coordinate" in line
    assert "database" not in result.stderr


def test_version_names_the_installed_release(cli_env: dict[str, str]) -> None:
    result = subprocess.run(
        [*COMMAND, "--version"], env=cli_env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"conductor-e {importlib.metadata.version('conductor-e')}"


def _with_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{user}:hunter2-secret@{host}", *parts[2:]))


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        ("role", "check the user"),
        ("database", "create that database, or fix its name in DATABASE_URL"),
        ("refused", "is PostgreSQL running there"),
    ],
)
def test_a_wrong_database_url_is_one_line_with_the_likely_fix(
    cli_env: dict[str, str], pg_server_dsn: str, wrong: str, hint: str
) -> None:
    """An unknown role, a missing database or a refused connection used to end in a 40-line
    asyncpg traceback, or in `[Errno 111]` without naming the setting."""
    url = {
        "role": _with_user(pg_server_dsn, "nobody"),
        "database": with_database(pg_server_dsn, "no_such_database"),
        "refused": f"postgresql://conductor:hunter2-secret@127.0.0.1:{free_port()}/conductor",
    }[wrong]
    result = subprocess.run(
        [*COMMAND, "migrate"],
        env={**cli_env, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert "cannot connect to DATABASE_URL" in error and hint in error, error


def test_a_port_in_use_is_said_before_the_database_starts(cli_env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [*COMMAND, "api"],
            env={**cli_env, "CONDUCTOR_HTTP_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"cannot listen on 127.0.0.1:{port}" in line and "CONDUCTOR_HTTP_PORT" in line
    assert "database" not in result.stderr
