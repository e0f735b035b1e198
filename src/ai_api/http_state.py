"""Where an upstream connection is in its life (one enum, which `Connection`'s methods move and
`Response` reads), and the two failures the HTTP client adds to `OSError` and `TimeoutError`."""

from __future__ import annotations

import enum


class BadResponse(Exception):
    """The upstream's bytes are not an HTTP/1.1 response this client can read."""


class Stale(ConnectionError):
    """A kept connection was closed by the server before it answered: try a new one.

    Nearly always the server had closed it while it waited, before the request arrived (the
    race every keep-alive client meets). If it had read the request and then closed without a
    byte of answer, the provider sees the request twice. aiohttp's client did not retry a
    POST (it failed, and the gateway then failed over to another member, which also costs a
    request); browsers do retry on a reused connection that gave no byte, as this does, once.
    """


class State(enum.Enum):
    """Where a connection is in its life; `Connection`'s methods move it, as each says."""

    FRESH = "connected, not used yet"
    IDLE = "between exchanges, kept for the next"
    SENT = "the request is out, not a byte of the answer yet"
    READING = "the answer is arriving"
    DRAINING = "released before the end of its answer, whose rest is read and dropped"
    DONE = "the answer is complete; fit for another exchange"
    SPENT = "the answer is complete; not to be trusted with another"
    CLOSED = "the connection is lost"


# Module names for the states: an enum member's attribute lookup costs ~0.3 us on Python 3.11,
# and data_received runs per socket read.
FRESH, IDLE, SENT, READING = State.FRESH, State.IDLE, State.SENT, State.READING
DRAINING, DONE, SPENT, CLOSED = State.DRAINING, State.DONE, State.SPENT, State.CLOSED
