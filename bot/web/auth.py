"""Who is writing: per-agent bearer tokens (CONDUCTOR_API_TOKENS)."""

from __future__ import annotations

import hmac

from aiohttp import web

from bot.errors import Unauthorized
from bot.services.intake.events import Actor
from bot.web.keys import CONTEXT


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of a presented secret, whatever characters it holds (header
    bytes that are not UTF-8 arrive as surrogates, which plain `encode()` refuses)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def actor_for(request: web.Request) -> Actor:
    """The writer behind a request. With CONDUCTOR_API_TOKENS set, a valid bearer token is
    required (Unauthorized otherwise) and names the agent; without tokens, writes are open."""
    tokens = request.app[CONTEXT].settings.api_tokens
    if not tokens:
        return Actor(name=None, authenticated=False)
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("a bearer token is required for writes")
    given = presented.strip()
    match = None
    for agent, token in tokens.items():
        # Compare against every token so the time taken does not tell which one matched.
        if same_secret(given, token.get_secret_value()):
            match = agent
    if match is None:
        raise Unauthorized("the bearer token is not valid")
    return Actor(name=match, authenticated=True)
