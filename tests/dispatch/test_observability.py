"""Valkey in /healthz/deep (not critical), the dashboard's health list and /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient

from bot.context import AppContext
from bot.services.dispatch.dispatcher import DispatchService
from tests.dispatch.conftest import RedisServer
from tests.routing.test_claims import approve, configure

StartApi = Callable[[AppContext], Awaitable[TestClient]]


async def valkey_health(api: TestClient, path: str) -> tuple[int, dict[str, object]]:
    response = await api.get(path)
    body = await response.json()
    (valkey,) = [c for c in body["components"] if c["name"] == "valkey"]
    return response.status, valkey


async def test_valkey_down_shows_in_deep_health_without_failing_it(
    dispatcher_factory: Callable[..., DispatchService],
    api_client_factory: StartApi,
    redis_server: RedisServer,
) -> None:
    dispatcher = dispatcher_factory()
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    redis_server.stop()

    status, valkey = await valkey_health(api, "/healthz/deep")

    assert status == 200  # not critical: the pull path still works
    assert valkey["status"] == "down" and valkey["critical"] is False
    assert "unreachable" in str(valkey["detail"])
    redis_server.start()
    status, valkey = await valkey_health(api, "/dashboard/api/health")
    assert status == 200 and valkey["status"] == "up"
    assert isinstance(valkey["latencyMs"], float)


async def test_metrics_count_dispatched_pending_and_lag(
    dispatcher_factory: Callable[..., DispatchService], api_client_factory: StartApi
) -> None:
    dispatcher = dispatcher_factory()
    api = await api_client_factory(dispatcher.context, dispatch=dispatcher)
    await configure(dispatcher.context, "acme/ml", {"stack": "python"})
    await approve(api, "acme/ml", 1)
    await approve(api, "acme/ml", 2)
    await dispatcher.tick()

    text = await (await api.get("/metrics")).text()

    assert "conductor_dispatch_dispatched 1.0" in text
    assert 'conductor_dispatch_pending{where="stream"} 1.0' in text
    assert 'conductor_dispatch_pending{where="outbox"} 0.0' in text
    assert "conductor_dispatch_lag_seconds 0.0" in text
