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
        self._tail = lines.pop()
        events: list[bytes] = []
        data = self._data
        for line in lines:  # every line of every stream: kept lean
            if not line:
                if data:
                    events.append(data[0] if len(data) == 1 else b"\n".join(data))
                    data.clear()
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
            # Comments (`:`) and other fields (`event`, `id`, `retry`) carry nothing we use.
        return events

    def close(self) -> list[bytes]:
        """The data of an event left undispatched when the stream ended, if any."""
        return self.feed(b"\n\n")  # ends the last line and dispatches what it completes
