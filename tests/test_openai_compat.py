"""The OpenAI-compatible adapter against a fake upstream: its read and total timeouts, whole
answers read in bulk, and the bounds on what an upstream may send."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

import pytest

from ai_api.errors import UpstreamProtocol, UpstreamStatus, UpstreamTimeout
from ai_api.fakes import FakeUpstream, Fault
from ai_api.http_client import HTTPClient
from ai_api.providers.openai_compat import OpenAICompatible
from ai_api.providers.presets import GROQ
from ai_api.schemas import ChatRequest, Chunk, Message

from .lag import lag_probe


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


class Attacker:
    """A raw upstream on 127.0.0.1: answers a request with a 200 SSE head, then with `attack`
    in 64 KiB writes, let out apart, until the client closes (or the attack ends: it closes
    then); counts the bytes that went out."""

    def __init__(self, attack: bytes) -> None:
        self.attack = attack
        self.sent = 0
        self.over = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
            for start in range(0, len(self.attack), 1 << 16):
                writer.write(self.attack[start : start + (1 << 16)])
                await writer.drain()
                self.sent = min(start + (1 << 16), len(self.attack))
                await asyncio.sleep(0.001)
        except ConnectionError:
            pass  # the client closed the connection
        finally:
            writer.close()
            self.over.set()


@asynccontextmanager
async def attacked(
    attack: bytes, max_answer_bytes: int
) -> AsyncIterator[tuple[Attacker, OpenAICompatible]]:
    """A provider reading from an upstream that sends `attack` as its body."""
    attacker = Attacker(attack)
    server = await asyncio.start_server(attacker.serve, "127.0.0.1", 0)
    client = HTTPClient()
    try:
        base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        yield (
            attacker,
            OpenAICompatible(
                GROQ,
                api_key="k",
                base_url=base_url,
                client=client,
                max_answer_bytes=max_answer_bytes,
            ),
        )
    finally:
        await client.close()
        async with asyncio.timeout(2):
            await attacker.over.wait()  # the client's close ends the attack
        server.close()
        await server.wait_closed()


def token(n: int) -> bytes:
    """One stream event carrying a token, as Groq sends it."""
    return (
        b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"%d "},"finish_reason":null}]}\n\n' % n
    )


ENDLESS_LINE = token(0) + b"data: " + b"y" * (8 << 20)


@pytest.mark.parametrize(
    ("attack", "whole", "limit", "said"),
    [
        (ENDLESS_LINE, False, 4 << 20, "a line of the stream passes 4194304 bytes"),
        (ENDLESS_LINE, True, 4 << 20, "a line of the stream passes 4194304 bytes"),
        (b"".join(token(n) for n in range(20_000)), True, 1 << 20, "the answer passes 1048576"),
    ],
    ids=["a-line-that-never-ends", "a-line-that-never-ends-whole", "a-huge-whole-answer"],
)
async def test_an_upstream_sending_past_a_limit_is_a_protocol_error_after_about_the_limit(
    attack, whole, limit, said
):
    """An event (or a line) past 4 MiB, or an answer taken whole past `max_answer_bytes` (the
    default 32 MiB, 1 MiB here for the answer): the upstream failed, before it sent much
    more, and the loop was never blocked long."""
    answer_limit = limit if limit < 4 << 20 else 32 << 20
    async with (
        attacked(attack, max_answer_bytes=answer_limit) as (attacker, groq),
        lag_probe() as lag,
    ):
        with pytest.raises(UpstreamProtocol, match=said):
            async for _ in stream(groq, hola(whole=whole)):
                pass
    assert len(attack) >= 2 * limit
    assert attacker.sent < limit + (1 << 20), attacker.sent  # the limit and bytes in flight
    assert lag[0] < 0.05


async def test_a_whole_answer_within_the_limit_is_read():
    answer = b"".join(token(n) for n in range(3)) + token(3).replace(
        b'"finish_reason":null', b'"finish_reason":"stop"'
    )
    async with attacked(answer + b"data: [DONE]\n\n", max_answer_bytes=len(answer) + 14) as (
        _,
        groq,
    ):
        chunks = [chunk async for chunk in stream(groq, hola(whole=True))]
    assert "".join(c.content for c in chunks) == "0 1 2 3 "
