"""The fake Discord itself: it refuses what Discord would refuse, in Discord's shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakes.discord import FakeDiscord


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.close()


async def test_responses_are_json_exactly(fake: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{fake.api_url}/users/@me", headers={"Authorization": f"Bot {fake.token}"}
        ) as response,
    ):
        assert response.headers["Content-Type"] == "application/json"
        assert (await response.json())["id"] == str(fake.bot_user_id)


async def test_a_body_that_breaks_the_schema_is_refused_and_recorded(fake: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{fake.api_url}/channels/{fake.channel_ids['conductor-e']}/messages",
            json={"content": "x" * 4001},
            headers={"Authorization": f"Bot {fake.token}"},
        ) as response,
    ):
        assert response.status == 400
        assert (await response.json())["code"] == 50035
    assert fake.schema_errors == [
        "POST /channels/{channel_id}/messages: content: breaks maxLength=4000"
    ]


async def test_an_answer_of_the_fake_that_breaks_the_response_schema_is_recorded(
    fake: FakeDiscord,
) -> None:
    user = fake.bot_user()
    del user["locale"]  # Discord always sends its own user's locale
    fake.bot_user = lambda: user  # type: ignore[method-assign]
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{fake.api_url}/users/@me", headers={"Authorization": f"Bot {fake.token}"}
        ) as response,
    ):
        assert response.status == 200
    assert fake.schema_errors == [
        "GET /users/@me answered 200: (body): 'locale' is a required property"
    ]


async def test_unknown_endpoints_and_missing_auth(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.api_url}/not/a/route") as response:
            assert response.status == 404
        async with http.get(f"{fake.api_url}/users/@me") as response:
            assert response.status == 401
    assert fake.unhandled == [
        "GET /api/v10/not/a/route is not a Discord endpoint the fake serves (to serve one: add "
        "its `_op_<operationId>` handler, then run scripts/extract_discord_openapi.py)"
    ]


async def test_gateway_bot_names_the_fake_gateway(fake: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{fake.api_url}/gateway/bot", headers={"Authorization": f"Bot {fake.token}"}
        ) as response,
    ):
        body = await response.json()
    assert body["url"] == fake.gateway_url
    assert body["shards"] == 1


async def test_identify_with_a_wrong_token_is_closed_4004(fake: FakeDiscord) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url) as ws:
        hello = await ws.receive_json()
        assert hello["op"] == 10
        await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 1, "properties": {}}})
        closed = await ws.receive()
        assert closed.type == aiohttp.WSMsgType.CLOSE
        assert closed.data == 4004
