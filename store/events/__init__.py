"""The event store: append and claim (writer), read (reads), follow live (follower).

Import the public names from here.
"""

from store.events.follower import NOTIFY_CHANNEL, EventFollower
from store.events.reads import EventReader
from store.events.records import AppendResult, Claim, NewEvent, RecordedEvent, field_names, from_row
from store.events.writer import CONCURRENCY_SQLSTATE, EventStore, check_claimable, check_storable

__all__ = [
    "CONCURRENCY_SQLSTATE",
    "NOTIFY_CHANNEL",
    "AppendResult",
    "Claim",
    "EventFollower",
    "EventReader",
    "EventStore",
    "NewEvent",
    "RecordedEvent",
    "check_claimable",
    "check_storable",
    "field_names",
    "from_row",
]
