"""Server-Sent Events: encode events for clients, decode events from upstreams.

The decoder follows the WHATWG rules that the official OpenAI, Groq and Cerebras SDKs use:
lines end in CRLF, LF or CR; a blank line dispatches; `:` starts a comment; several `data:`
lines join with a newline; one space after the colon is dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import msgspec

_encode = msgspec.json.encode


def encode_data(payload: object) -> bytes:
    """One unnamed event carrying `payload` as JSON."""
    return b"data: " + _encode(payload) + b"\n\n"


def encode_event(name: str, payload: object) -> bytes:
    """One named event (`event: name`) carrying `payload` as JSON."""
    return b"event: " + name.encode() + b"\ndata: " + _encode(payload) + b"\n\n"


class SSEDecoder:
    """Turns lines into the data of complete events; holds the event being assembled."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: list[bytes] = []

    def feed(self, line: bytes) -> bytes | None:
        """Take one line (with or without its ending); return an event's data when one ends."""
        line = line.rstrip(b"\n").removesuffix(b"\r")
        if not line:
            if not self._data:
                return None
            data = b"\n".join(self._data)
            self._data = []
            return data
        if line.startswith(b":"):
            return None
        field, _, value = line.partition(b":")
        if field == b"data":
            self._data.append(value[1:] if value.startswith(b" ") else value)
        return None

    def flush(self) -> bytes | None:
        """The data of an event left undispatched when the stream ended, if any."""
        return self.feed(b"")


async def iter_sse_data(lines: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The data of each event in a stream of lines (e.g. an aiohttp response's content)."""
    decoder = SSEDecoder()
    async for raw in lines:
        line = raw.rstrip(b"\n").removesuffix(b"\r")
        # aiohttp splits on LF only; a lone CR inside a line is a line break too.
        for part in line.split(b"\r") if b"\r" in line else (line,):
            data = decoder.feed(part)
            if data is not None:
                yield data
    tail = decoder.flush()
    if tail is not None:
        yield tail
