"""Prometheus metrics: request counts and latencies, appends, claims, queue depth, and
whether each component (discord, github, anthropic) reaches its upstream.

One registry per application (no process-global collectors), served at GET /metrics by the
handler `Metrics.handler(context)` builds: it is given the context rather than reading it from
the application, so this module needs nothing from bot.web.keys (which imports it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from bot.context import AppContext

# nginx's "client closed request": a request whose client went away is not a server error.
CLIENT_CLOSED = 499

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "conductor_http_requests_total",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "conductor_http_request_duration_seconds",
            "HTTP request latency by method and route.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.appends = Counter(
            "conductor_events_appended_total",
            "Events appended through the API, by type.",
            ["type"],
            registry=self.registry,
        )
        self.claims = Counter(
            "conductor_claims_total",
            "Claim requests by kind and result (claimed, empty).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "conductor_queue_depth",
            "Queued issues by priority.",
            ["priority"],
            registry=self.registry,
        )
        self.component_up = Gauge(
            "conductor_component_up",
            "1 while a component reaches its upstream, 0 while it is down or stopped.",
            ["component"],
            registry=self.registry,
        )
        self.dispatched = Gauge(
            "conductor_dispatch_dispatched",
            "Assignments written to the agents' Valkey streams (all time).",
            registry=self.registry,
        )
        self.dispatch_pending = Gauge(
            "conductor_dispatch_pending",
            "Assignments not done with: waiting in the outbox, or unacknowledged in a stream.",
            ["where"],
            registry=self.registry,
        )
        self.dispatch_lag = Gauge(
            "conductor_dispatch_lag_seconds",
            "How long the oldest assignment not yet written to its stream has waited.",
            registry=self.registry,
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # The route's pattern, not the raw path, so ids do not explode the label set.
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = CLIENT_CLOSED  # the client went away and its handler was cancelled
            raise
        finally:
            self.requests.labels(request.method, route, str(status)).inc()
            self.latency.labels(request.method, route).observe(time.perf_counter() - started)

    def handler(self, context: AppContext) -> Handler:
        """GET /metrics: the gauges read from `context` at scrape time, then the registry."""

        async def handle_metrics(request: web.Request) -> web.StreamResponse:
            for state in context.components.all():
                self.component_up.labels(state.name).set(1 if state.status == "up" else 0)
            depth = await context.projections.queue_depth()
            for priority in ("critical", "high", "normal"):
                self.queue_depth.labels(priority).set(depth.get(priority, 0))
            if context.dispatch is not None:
                stats = await context.dispatch.stats()
                self.dispatched.set(stats.dispatched)
                self.dispatch_pending.labels("outbox").set(stats.outbox)
                self.dispatch_pending.labels("stream").set(stats.unacked)
                self.dispatch_lag.set(stats.lag_seconds)
            response = web.Response(body=generate_latest(self.registry))
            response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
            response.charset = "utf-8"
            return response

        return handle_metrics
