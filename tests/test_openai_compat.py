"""The OpenAI-compatible adapter against a fake upstream: its read and total timeouts, and
whole answers read in bulk."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import pytest

from ai_api.errors import UpstreamStatus, UpstreamTimeout
from ai_api.fakes import FakeUpstream, Fault
from ai_api.http_client import HTTPClient
from ai_api.providers.openai_compat import OpenAICompatible
from ai_api.providers.presets import GROQ
from ai_api.schemas import ChatRequest, Chunk, Message


@asynccontextmanager
async def groq_over_fake(
    token_delay: float, read_timeout: float | None = None, total_timeout: float | None = None
) -> AsyncIterator[tuple[FakeUpstream, OpenAICompatible]]:
    """A Groq fake sending a token every `token_delay` s, and a provider reading it."""
    client = HTTPClient()
    try:
        async with FakeUpstream("groq", api_key="k", token_delay=token_delay) as fake:
            yield (
                fake,
                OpenAICompatible(
                    GROQ,
                    api_key="k",
                    base_url=fake.base_url,
                    client=client,
                    read_timeout=read_timeout,
                    total_timeout=total_timeout,
                ),
            )
    finally:
        await client.close()


async def stream(provider: OpenAICompatible, request: ChatRequest) -> AsyncIterator[Chunk]:
    """The chunks of the answer `provider` opens for `request`."""
    answer = await provider.open(request)
    async with aclosing(answer.blocks) as blocks:
        async for block in blocks:
            for chunk in block:
                yield chunk


def hola(whole: bool = False) -> ChatRequest:
    return ChatRequest(
        messages=(Message("user", "hola"),), model="openai/gpt-oss-120b", whole=whole
    )


async def test_the_read_timeout_counts_only_time_spent_waiting_for_the_upstream():
    """A consumer slower than the read timeout is not upstream silence; a stalled upstream is."""
    async with groq_over_fake(0.02, read_timeout=0.2) as (fake, groq):
        chunks = []
        async for chunk in stream(groq, hola()):
            chunks.append(chunk)
            await asyncio.sleep(0.3)  # the consumer dawdles between chunks
        assert chunks[-1].usage is not None
        fake.add_fault(Fault(stall_after=2))
        with pytest.raises(UpstreamTimeout, match="read timeout"):
            async for _ in stream(groq, hola()):
                pass


async def test_the_total_timeout_ends_an_answer_that_keeps_coming():
    async with groq_over_fake(0.1, read_timeout=5, total_timeout=0.35) as (_, groq):
        got: list[str] = []

        async def listen() -> None:
            async for chunk in stream(groq, hola()):
                got.append(chunk.content)

        with pytest.raises(UpstreamTimeout, match="total timeout"):
            await listen()
        assert "".join(got)  # it was answering, never silent for the read timeout


async def test_an_answer_taken_whole_is_read_in_bulk_yet_still_watched_for_silence():
    """Past the first token a whole answer is read at once: an answer longer than the read
    timeout, with short gaps, is not silence; a stalled one still is."""
    async with groq_over_fake(0.03, read_timeout=0.2) as (fake, groq):
        # 20 tokens 30 ms apart: 0.6 s, three read timeouts, in one read after the first token
        texts = [[c.content async for c in stream(groq, r)] for r in (hola(), hola(whole=True))]
        assert "".join(texts[1]) == "".join(texts[0])
        assert len(texts[1]) < len(texts[0])  # the rest came in one piece, not token by token
        fake.add_fault(Fault(stall_after=3))
        with pytest.raises(UpstreamTimeout, match="read timeout"):
            async for _ in stream(groq, hola(whole=True)):
                pass


async def test_an_answer_taken_whole_ends_at_done_though_the_body_ends_late():
    """A bulk read still wakes at `[DONE]`: it does not wait for the end of the body, and an
    end that comes after the read timeout is not silence."""
    async with groq_over_fake(0.01, read_timeout=0.3) as (fake, groq):
        fake.add_fault(Fault(end_delay=5))
        chunks = [chunk async for chunk in stream(groq, hola(whole=True))]
        assert chunks[-1].usage is not None
        assert "".join(c.content for c in chunks)


@pytest.mark.parametrize(
    "fault",
    [
        Fault(status=429, retry_after=7, cut_after=0),
        Fault(status=429, retry_after=7, stall_after=0),
    ],
    ids=["cut", "stall"],
)
async def test_an_error_whose_body_breaks_off_still_tells_its_status_and_when_to_retry(fault):
    """The status line and headers said it: a 429 whose body is cut, or stalls past the read
    timeout, is still a 429 with its retry-after, not an unreachable or silent provider."""
    async with groq_over_fake(0.01, read_timeout=0.3) as (fake, groq):
        fake.add_fault(fault)
        before = time.time()
        with pytest.raises(UpstreamStatus) as caught:
            async for _ in stream(groq, hola()):
                pass
    assert caught.value.upstream_status == 429
    assert caught.value.retry_at == pytest.approx(before + 7, abs=1)
