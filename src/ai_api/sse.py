"""Server-Sent Events: encode events for clients, decode events from upstreams.

The decoder follows the WHATWG rules that the official OpenAI, Groq and Cerebras SDKs use:
lines end in CRLF, LF or CR; a blank line dispatches; `:` starts a comment; several `data:`
lines join with a newline; one space after the colon is dropped. An event (or a line) past
`EVENT_LIMIT` bytes, or a stream past the decoder's `limit`, is refused with a `ValueError`,
after about that many bytes were read.
"""

from __future__ import annotations

import msgspec

_encode = msgspec.json.encode

EVENT_LIMIT = 1 << 22
"""Most bytes of one upstream event, or of one line of it, the decoder holds (4 MiB)."""

_LONG = 1 << 16
"""Bytes of a line without end past which it is kept in pieces, not joined again per block."""


def encode_data(payload: object) -> bytes:
    """One unnamed event carrying `payload` as JSON."""
    return b"data: " + _encode(payload) + b"\n\n"


def encode_event(name: str, payload: object) -> bytes:
    """One named event (`event: name`) carrying `payload` as JSON."""
    return b"event: " + name.encode() + b"\ndata: " + _encode(payload) + b"\n\n"


class SSEDecoder:
    """Turns blocks of bytes, cut anywhere, into the data of complete events; `limit`: most
    bytes of the whole stream (None: any)."""

    __slots__ = ("_cr", "_data", "_held", "_limit", "_long", "_room", "_tail")

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._room = float("inf") if limit is None else limit
        self._tail = b""
        self._data: list[bytes] = []
        self._cr = False  # the last block ended with CR: a LF starting the next one pairs with it
        self._held = 0  # at least the bytes of the event in progress (its data and the tail)
        self._long: list[bytes] | None = None  # a long line without end yet, in pieces

    def feed(self, block: bytes) -> list[bytes]:
        """The data of every event that `block` completes; a `ValueError` for an event or a
        line past `EVENT_LIMIT` bytes, or for a stream past the limit."""
        self._room -= len(block)
        if self._room < 0:
            raise ValueError(f"the answer passes {self._limit} bytes")
        if self._long is not None and self._lengthen(self._long, block):
            return []
        if self._cr and block.startswith(b"\n"):
            block = block[1:]
        text = self._tail + block if self._tail else block
        self._cr = text.endswith(b"\r")
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        elif not self._data and text.startswith(b"data: ") and text.endswith(b"\n\n"):
            # What OpenAI-compatible upstreams send: whole events of one `data: ` line each.
            # Split at the event boundaries in one go; the count of line ends proves that no
            # event had another line (a payload holds no raw line end), else read line by line.
            payloads = text[6:-2].split(b"\n\ndata: ")
            if text.count(b"\n") == 2 * len(payloads):
                self._tail = b""
                return payloads
        lines = text.split(b"\n")
        tail = self._tail = lines.pop()
        events: list[bytes] = []
        data = self._data
        had = bool(data)
        for line in lines:  # every line of every stream: kept lean
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            # Comments (`:`) and other fields (`event`, `id`, `retry`) carry nothing we use.
        if data or len(tail) > _LONG:
            # An event in progress holds at most what came since the last dispatch.
            self._keep(tail, len(text) if events or not had else self._held + len(block))
        return events

    def _lengthen(self, long: list[bytes], block: bytes) -> bool:
        """Whether `block` only lengthens the long line without end (else it is the tail)."""
        if b"\n" in block or b"\r" in block:
            self._tail, self._long = b"".join(long), None
            return False
        long.append(block)
        self._held += len(block)
        if self._held > EVENT_LIMIT:
            raise ValueError(f"a line of the stream passes {EVENT_LIMIT} bytes")
        return True

    def _keep(self, tail: bytes, held: int) -> None:
        """Hold an event in progress of at most `held` bytes, or a long `tail` (in pieces)."""
        held = self._held = held if self._data else len(tail)
        if held > EVENT_LIMIT:
            raise ValueError(f"an event of the stream passes {EVENT_LIMIT} bytes")
        if len(tail) > _LONG:
            self._long, self._tail = [tail], b""

    def close(self) -> list[bytes]:
        """The data of an event left undispatched when the stream ended, if any."""
        return self.feed(b"\n\n")  # ends the last line and dispatches what it completes
