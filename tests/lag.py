"""How long the event loop was blocked while a test's attack ran."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def lag_probe() -> AsyncIterator[list[float]]:
    """The most the loop was late (in seconds) for a task sleeping 1 ms over and over, while
    the block ran: how long the loop was ever blocked."""
    loop = asyncio.get_running_loop()
    worst = [0.0]

    async def probe() -> None:
        while True:
            start = loop.time()
            await asyncio.sleep(0.001)
            worst[0] = max(worst[0], loop.time() - start - 0.001)

    task = loop.create_task(probe())
    try:
        yield worst
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
