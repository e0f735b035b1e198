"""Server-Sent Events: encode events for clients, decode events from upstreams.

The decoder follows the WHATWG rules that the official OpenAI, Groq and Cerebras SDKs use:
lines end in CRLF, LF or CR; a blank line dispatches; `:` starts a comment; several `data:`
lines join with a newline; one space after the colon is dropped.
"""

from __future__ import annotations

import msgspec

_encode = msgspec.json.encode


def encode_data(payload: object) -> bytes:
    """One unnamed event carrying `payload` as JSON."""
    return b"data: " + _encode(payload) + b"\n\n"


def encode_event(name: str, payload: object) -> bytes:
    """One named event (`event: name`) carrying `payload` as JSON."""
    return b"event: " + name.encode() + b"\ndata: " + _encode(payload) + b"\n\n"


class SSEDecoder:
    """Turns blocks of bytes, cut anywhere, into the data of complete events."""

    __slots__ = ("_cr", "_data", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []
        self._cr = False  # the last block ended with CR: a LF starting the next one pairs with it

    def feed(self, block: bytes) -> list[bytes]:
        """The data of every event that `block` completes."""
        if self._cr and block.startswith(b"\n"):
            block = block[1:]
        text = self._tail + block
        self._cr = text.endswith(b"\r")
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = text.split(b"\n")
        self._tail = lines.pop()
        events: list[bytes] = []
        for line in lines:
            self._line(line, events)
        return events

    def close(self) -> list[bytes]:
        """The data of an event left undispatched when the stream ended, if any."""
        events: list[bytes] = []
        if self._tail:
            self._line(self._tail, events)
            self._tail = b""
        self._line(b"", events)
        return events

    def _line(self, line: bytes, events: list[bytes]) -> None:
        if not line:
            if self._data:
                events.append(self._data[0] if len(self._data) == 1 else b"\n".join(self._data))
                self._data = []
        elif line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)
        # Comments (`:`) and other fields (`event`, `id`, `retry`) carry nothing we use.
