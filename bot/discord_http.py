"""Where discord.py sends its requests: the REST base and the gateway address.

discord.py keeps both on classes rather than on a client: the REST base is the class attribute
`discord.http.Route.BASE` (read by every Route, including the webhook adapter that answers
interactions), and the gateway a plain `Client` connects to is
`discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY` (a plain Client never asks `/gateway/bot`).
No instance-level hook covers the interaction webhooks, so these two assignments are the least
global way there is. They are made in exactly one place, here, called by `ConductorBot` when it
logs in (`use_api`) and in its setup hook (`use_gateway`): one process runs one bot, so the
process-wide value is the bot's own.

With the default API URL nothing is redirected and discord.py's own gateway default stays; with
any other URL (a proxy, a test's fake Discord) the gateway address comes from that URL's
`/gateway/bot`, as Discord documents it.
"""

from __future__ import annotations

import logging

import discord.gateway
import discord.http
import yarl

DEFAULT_API_URL = "https://discord.com/api/v10"
_DISCORD_DEFAULT_GATEWAY = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY

log = logging.getLogger(__name__)


def is_default(api_url: str) -> bool:
    return api_url.rstrip("/") == DEFAULT_API_URL


def use_api(api_url: str) -> None:
    """Send every REST request (bot and interaction webhooks) to `api_url`."""
    discord.http.Route.BASE = api_url.rstrip("/")
    if is_default(api_url):
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = _DISCORD_DEFAULT_GATEWAY


async def use_gateway(http: discord.http.HTTPClient, api_url: str) -> str | None:
    """When `api_url` is not Discord's own, connect to the gateway its `/gateway/bot` names.

    Returns the address chosen, or None when discord.py's default stays.
    """
    if is_default(api_url):
        return None
    _shards, url, _limits = await http.get_bot_gateway()
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
    log.info("discord: gateway %s (from %s/gateway/bot)", yarl.URL(url).origin(), api_url)
    return url
