"""Push dispatch's side of the store: the transactional outbox (outbox.py). Import from here."""

from store.dispatch.outbox import Outbox, OutboxEntry, OutboxStats

__all__ = ["Outbox", "OutboxEntry", "OutboxStats"]
