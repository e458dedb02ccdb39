"""gidgethub's webhook routing, for bot/services/github/hooks.

Only bot/integrations imports the SDKs (tests/test_architecture.py). Router and Event are
gidgethub's sans-I/O part: a table of async callbacks keyed by event name and one top-level
field (the action), and the delivery they are called with. They are passed through unchanged
rather than wrapped; if gidgethub's routing changes, this module is where it is adapted.
"""

from __future__ import annotations

from gidgethub.routing import Router
from gidgethub.sansio import Event

__all__ = ["Event", "Router"]
