"""The compatibility suite: every request of the agent runtime's current source, replayed."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from tests.compat.runtime import HEADERS


async def send(api: TestClient, path: str, body: Any, status: int = 200) -> Any:
    """POST the body as the runtime does (JSON.stringify, Content-Type only); check the status."""
    response = await api.post(path, data=json.dumps(body), headers=HEADERS)
    answer = await response.json()
    assert response.status == status, answer
    return answer


async def read(api: TestClient, path: str, status: int = 200) -> Any:
    response = await api.get(path)
    answer = await response.json()
    assert response.status == status, answer
    return answer


async def timeline(api: TestClient, stream_id: str) -> list[dict[str, Any]]:
    """What /issue show and the timeline read: the stream's events, oldest first."""
    answer = await read(api, f"/api/events/stream?id={stream_id.replace('#', '%23')}")
    return list(answer["events"])
