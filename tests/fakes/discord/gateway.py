"""The gateway: `GET /gateway` and `GET /gateway/bot`, and the WebSocket at `/gateway` —
HELLO, IDENTIFY → READY and GUILD_CREATE, heartbeat ACKs, RESUME (replaying what the client
missed), presence updates (kept in `presences`), and `dispatch(...)` of any event.
`drop_connection()` closes the socket as Discord does on a hiccup; `reject_identify` refuses
every IDENTIFY as for a revoked token."""

from __future__ import annotations

import contextlib
import json
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord.guilds import Guilds

# Gateway opcodes.
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE = 0, 1, 2, 3
OP_RESUME, OP_RECONNECT, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 6, 7, 9, 10, 11


class Gateway(Guilds):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.presences: list[dict[str, Any]] = []
        self.identifies = 0
        self.reject_identify = False  # close every IDENTIFY with 4004, as for a revoked token
        self.resumes = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._session_id = secrets.token_hex(16)
        self._seq = 0
        self._sent: list[dict[str, Any]] = []  # dispatches of this session, for RESUME

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway)
        super()._add_routes(app)

    async def _hang_up(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        await super()._hang_up()

    @property
    def connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets) and self.identifies > 0

    # --- REST ---------------------------------------------------------------------------------
    async def _op_get_bot_gateway(self, *_: Any) -> web.Response:
        return self.json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 86_400_000,
                    "max_concurrency": 1,
                },
            }
        )

    async def _op_get_gateway(self, *_: Any) -> web.Response:
        return self.json({"url": self.gateway_url})

    # --- the WebSocket ------------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"op": OP_HELLO, "d": {"heartbeat_interval": 41_250}}))
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            await self._on_gateway(ws, json.loads(frame.data))
        return ws

    async def _on_gateway(self, ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
        op, data = message.get("op"), message.get("d")
        if op == OP_HEARTBEAT:
            await ws.send_str(json.dumps({"op": OP_HEARTBEAT_ACK}))
        elif op == OP_IDENTIFY:
            if data.get("token") != self.token or self.reject_identify:
                await ws.close(code=4004, message=b"Authentication failed.")
                return
            self.identifies += 1
            self._session_id = secrets.token_hex(16)
            self._seq = 0
            self._sent = []
            ready = {
                "v": 10,
                "user": self.bot_user(),
                "guilds": [{"id": str(self.guild_id), "unavailable": True}],
                "session_id": self._session_id,
                "resume_gateway_url": self.gateway_url,
                "shard": [0, 1],
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": [],
                "guild_join_requests": [],
                "_trace": ["fake-discord"],
            }
            await self._send_dispatch(ws, "READY", ready)
            await self._send_dispatch(ws, "GUILD_CREATE", self.guild())
        elif op == OP_RESUME:
            if data.get("token") != self.token or data.get("session_id") != self._session_id:
                await ws.send_str(json.dumps({"op": OP_INVALID_SESSION, "d": False}))
                return
            self.resumes += 1
            missed = [event for event in self._sent if event["s"] > int(data.get("seq") or 0)]
            for event in missed:
                await ws.send_str(json.dumps(event))
            await self._send_dispatch(ws, "RESUMED", {"_trace": ["fake-discord"]})
        elif op == OP_PRESENCE:
            self.presences.append(data)

    async def _send_dispatch(self, ws: web.WebSocketResponse | None, name: str, data: Any) -> None:
        self._seq += 1
        event = {"op": OP_DISPATCH, "t": name, "s": self._seq, "d": data}
        self._sent.append(event)
        if ws is not None and not ws.closed:
            await ws.send_str(json.dumps(event))

    def _live_socket(self) -> web.WebSocketResponse | None:
        live = [ws for ws in self._sockets if not ws.closed]
        return live[-1] if live else None

    async def dispatch(self, name: str, data: Any) -> None:
        """Send a gateway event; when no socket is open it waits in the RESUME buffer."""
        await self._send_dispatch(self._live_socket(), name, data)

    async def drop_connection(self, code: int = 4000) -> None:
        """Close the gateway socket as Discord does on a hiccup (resumable by default)."""
        ws = self._live_socket()
        if ws is not None:
            await ws.close(code=code, message=b"fake disconnect")
