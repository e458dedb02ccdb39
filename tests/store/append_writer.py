"""A writer process for the crash tests: appends batches of events until it is killed.

Usage: python append_writer.py DSN BATCH_SIZE
Each append puts BATCH_SIZE events on a fresh issue stream (each touching the projections).
"""

from __future__ import annotations

import asyncio
import sys

from store.database import create_pool
from store.events import EventStore, NewEvent


async def main(dsn: str, batch: int) -> None:
    pool = await create_pool(dsn, max_size=2)
    store = EventStore(pool)
    number = 0
    while True:
        number += 1
        data = {"repo": "crash/test", "issueNumber": number}
        events = [NewEvent("ISSUE_APPROVED", data)] + [
            NewEvent("ISSUE_ASSIGNED", {**data, "agentId": f"dev-e-{i}"}) for i in range(batch - 1)
        ]
        await store.append(f"crash/test#{number}", events)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
