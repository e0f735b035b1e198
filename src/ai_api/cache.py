"""The answer cache: an exact-match store of whole answers, so that a request asked again
costs no provider quota.

A request is cached when it asks for it: its route says `cache = true`, or the request sends
`X-AI-API-Cache: use` (look up; on a miss ask and keep), `refresh` (ask and keep, replacing)
or `skip` (neither). A request with `temperature > 0` is never cached unless its route says
`cache_sampled = true`: its answers are meant to differ. The key is a digest of the route,
the messages, the completion cap and every option sent upstream (not `stream`, and not which
API asked: an answer kept for the Messages API serves the same request in Chat Completions).

What is kept is the answer's chunks as its member streamed them, so a hit is replayed as a
stream (at the pace the client reads) or whole, whatever the first request was. Only an
answer that ended (with a finish reason) is kept: never one cut short, nor one whose client
left. Entries are bounded by age and by size (`store.cache`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from typing import Any, Literal

import msgspec

from .attempts import Opened, replay
from .errors import InvalidRequest
from .outcomes import cached, when_answered
from .routing import Deployment, Route
from .schemas import Chunk, Message
from .store.cache import AnswerStore

log = logging.getLogger("ai_api.cache")

Mode = Literal["use", "refresh", "skip"]
MODES: tuple[Mode, ...] = ("use", "refresh", "skip")
HEADER = "X-AI-API-Cache"

_UNCHANGING = frozenset({"user", "metadata", "store", "service_tier", "stream_options"})
"""Options that do not change the answer (who asks, what is logged, how usage is told)."""


class Kept(msgspec.Struct, frozen=True, array_like=True):
    """One kept answer: the member that gave it, its chunks in the blocks they came in, and
    what it cost (the tokens a hit saves)."""

    member: str
    blocks: list[list[Chunk]]
    prompt_tokens: int
    completion_tokens: int


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Kept).decode
_key_encode = msgspec.json.Encoder(order="sorted").encode


def mode_of(header: str | None, route: Route, options: Mapping[str, Any] | None) -> Mode:
    """What the cache does for this request: the header's word, else the route's `cache`;
    `skip` for a sampled request (`temperature > 0`) unless the route allows it.
    `InvalidRequest` for a header that is none of `use`, `refresh`, `skip`."""
    mode: Mode = "use" if route.cache else "skip"
    if header is not None:
        word = header.strip().lower()
        if word not in MODES:
            raise InvalidRequest(
                f"{HEADER}: {header[:20]!r} is not one of: use, refresh, skip.", param=HEADER
            )
        mode = word
    if mode != "skip" and not route.cache_sampled and _sampled(options):
        return "skip"
    return mode


def _sampled(options: Mapping[str, Any] | None) -> bool:
    temperature = (options or {}).get("temperature")
    return isinstance(temperature, int | float) and temperature > 0


def key_of(
    route: str,
    messages: tuple[Message, ...],
    max_tokens: int | None,
    options: Mapping[str, Any] | None,
) -> str:
    """The digest a request is kept under."""
    digest = hashlib.blake2b(route.encode(), digest_size=20)
    digest.update(b"\0%d\0" % (max_tokens or 0))
    digest.update(msgspec.json.encode(messages))
    kept = {k: v for k, v in (options or {}).items() if k not in _UNCHANGING}
    if kept:
        digest.update(_key_encode(kept))
    return digest.hexdigest()


class AnswerCache:
    """Looks requests up, replays hits, keeps the answers of misses (`AnswerStore` holds them)."""

    def __init__(self, store: AnswerStore, deployments: Callable[[], list[Deployment]]) -> None:
        self.store = store
        self._deployments = deployments
        self._by_member: dict[str, Deployment] | None = None

    def _deployment(self, member: str) -> Deployment | None:
        if self._by_member is None:
            self._by_member = {d.member: d for d in self._deployments()}
        return self._by_member.get(member)

    async def hit(self, key: str) -> Opened | None:
        """The kept answer as an opened stream, None when none is kept (or it was kept for a
        member this configuration no longer has)."""
        raw = await self.store.get(key)
        if raw is None:
            return None
        try:
            kept = _decode(raw)
        except msgspec.DecodeError:
            log.warning("the answer cache held an entry it cannot read: it is dropped")
            await self.store.delete(key)
            return None
        d = self._deployment(kept.member)
        if d is None or not kept.blocks:
            return None
        cached("hit", d, kept.prompt_tokens, kept.completion_tokens)
        return Opened(d, kept.blocks[0], replay(kept.blocks[1:]), 0, cache="hit")

    def keeping(self, key: str, opened: Opened) -> Opened:
        """`opened`, its blocks kept as they pass; the answer is stored once it ended."""
        cached("miss")
        opened.chunks = self._kept(key, opened, opened.chunks)
        opened.cache = "miss"
        return opened

    async def _kept(
        self, key: str, opened: Opened, chunks: AsyncGenerator[list[Chunk], None]
    ) -> AsyncGenerator[list[Chunk], None]:
        blocks = [opened.first] if opened.first else []
        async with aclosing(chunks):
            async for block in chunks:
                blocks.append(block)
                yield block
        # Here only when the stream ended by itself (an error or the client leaving ends it
        # with an exception, before this line): keep it if it ended with a finish reason.
        last = [c for block in blocks for c in block if c.finish_reason or c.usage]
        if not any(c.finish_reason for c in last):
            return
        usage = next((c.usage for c in reversed(last) if c.usage is not None), None)
        prompt = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else 0
        entry = Kept(opened.deployment.member, blocks, prompt, completion)
        # Kept once the API answered whole with it (a Messages answer whose tool arguments
        # are not JSON fails after its stream ended: it must not be replayed).
        write = functools.partial(self.store.put, key, _encode(entry))
        if not when_answered(write):
            await write()
