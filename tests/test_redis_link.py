"""RedisLink: writes made while Redis was away are replayed in order, once."""

from __future__ import annotations

import asyncio

from .home_redis import require_redis, running_redis

require_redis()

from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: E402
from redis.exceptions import ResponseError  # noqa: E402

from ai_api.store.redis_link import DOWN, RedisLink  # noqa: E402


async def _nothing() -> None:
    return None


async def test_a_replay_slower_than_the_retry_interval_runs_each_write_once_in_order():
    async with running_redis() as server:
        link = RedisLink(server.url, retry_every=0.05)
        await link.open({})
        replayed: list[int] = []
        away = True

        def write(n: int):  # fails while Redis is "away", then takes 0.1 s (a slow Redis)
            async def call() -> None:
                if away:
                    raise RedisConnectionError("away")
                await asyncio.sleep(0.1)
                replayed.append(n)

            return call

        for n in range(3):
            await link.write(write(n))
        away = False
        await asyncio.sleep(0.06)

        async def later() -> object:
            await asyncio.sleep(0.12)  # past the retry interval, the first replay still going
            return await link.attempt(_nothing)

        results = await asyncio.gather(link.attempt(_nothing), later())
        await link.close()
    assert replayed == [0, 1, 2]
    assert list(results) == [None, DOWN]  # the second caller is served from the fallback meanwhile


async def test_a_replayed_write_redis_refuses_is_tried_again_then_dropped_failing_no_caller(
    caplog,
):
    """A write Redis refuses (out of memory, read-only, ...) does not hold the writes after it
    back for ever, nor fail the unrelated calls that find Redis back: it is asked three times,
    then dropped with an error in the log."""
    async with running_redis() as server:
        link = RedisLink(server.url, retry_every=0)
        await link.open({})
        ran: list[str] = []
        away = True

        async def refused() -> None:
            if away:
                raise RedisConnectionError("away")
            raise ResponseError("OOM command not allowed when used memory > 'maxmemory'")

        async def fine() -> None:
            ran.append("fine")

        await link.write(refused)
        await link.write(fine)
        away = False
        results = [await link.attempt(_nothing) for _ in range(3)]
        await link.close()
    assert results == [DOWN, DOWN, None]
    assert ran == ["fine"]
    assert "refused a replayed write 3 times" in caplog.text
