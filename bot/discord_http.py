"""Where discord.py sends its requests: the REST base and the gateway address.

discord.py keeps both on classes, not on a client (`Route.BASE`, which the webhook adapter
answering interactions reads too, and `DiscordWebSocket.DEFAULT_GATEWAY`), and no hook on an
instance covers the interaction webhooks: setting them here, in one place, is the least global
way there is. One process runs one bot, so the process-wide value is the bot's own;
`ConductorBot` calls `use_api` when it logs in and `use_gateway` in its setup hook.
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
    """When `api_url` is not Discord's own, connect to the gateway its `/gateway/bot` names, as
    Discord documents it (a plain Client never asks, and would go to Discord's own gateway).

    Returns the address chosen, or None when discord.py's default stays.
    """
    if is_default(api_url):
        return None
    _shards, url, _limits = await http.get_bot_gateway()
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
    log.info("discord: gateway %s (from %s/gateway/bot)", yarl.URL(url).origin(), api_url)
    return url
