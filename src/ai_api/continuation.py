"""Mid-stream continuation, its pure parts: what the client has of an answer whose member
failed, whether that failure may be continued, and how a continuation's chunks reach the client.

The next member is asked to continue the text already sent, given as a final assistant message
in its prefill dialect (`ProviderSpec.prefill`). A member not known to take a prefill (or one
that refused it) is asked for the whole answer again, and what it says is forwarded only past
the part already sent, and only if it begins with exactly that part; otherwise the answer ends
with the in-band error, never with two answers spliced together. The loop itself is in
`attempts`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import UpstreamError
from .providers.presets import Prefill
from .routing import Deployment
from .schemas import Chunk, Usage
from .verdicts import Ending, Retry, retry_of

_REFUSALS = frozenset({400, 422})
"""What a provider answers a request it will not take as sent: to a continuation that differs
from the request already accepted only by its final assistant message, the prefill."""


@dataclass(frozen=True, slots=True)
class Sent:
    """What the client has of an answer: its text, and whether a tool call or the finish
    reason was among it."""

    text: str
    calling: bool
    finished: bool

    @classmethod
    def of(cls, blocks: Iterable[list[Chunk]]) -> Sent:
        """What `blocks` sent."""
        text: list[str] = []
        calling = finished = False
        for block in blocks:
            for chunk in block:
                text.append(chunk.content)
                calling = calling or bool(chunk.tool_calls)
                finished = finished or chunk.finish_reason is not None
        return cls("".join(text), calling, finished)

    def continuable(self, failure: UpstreamError) -> bool:
        """Whether another member may finish the answer after `failure`: not inside a tool
        call (its arguments cannot be continued), not past the finish reason (the answer is
        whole), and not a failure that says no member may take the request."""
        return (
            not self.calling
            and not self.finished
            and retry_of(failure.outcome(started=True)) is Retry.ANY
        )


def refuses_prefill(error: UpstreamError) -> bool:
    """Whether `error`, the answer to a prefilled continuation before anything of it came,
    refuses the prefill (a 400 or 422: the request was the one another member accepted, plus
    the partial answer)."""
    return error.ending is Ending.STATUS and error.upstream_status in _REFUSALS


class Prefills:
    """Which prefill dialect each member takes: its spec's, until it refuses one (remembered
    by this process until it stops)."""

    __slots__ = ("_refused",)

    def __init__(self) -> None:
        self._refused: set[str] = set()

    def of(self, deployment: Deployment) -> Prefill | None:
        """The dialect to ask `deployment` in; None: ask for the whole answer again."""
        if deployment.public_name in self._refused:
            return None
        return deployment.spec.prefill

    def refused(self, deployment: Deployment) -> None:
        """`deployment` refused a prefill: ask it for whole answers from now on."""
        self._refused.add(deployment.public_name)


def added(a: Usage, b: Usage) -> Usage:
    """The usage of two attempts together."""
    return Usage(
        a.prompt_tokens + b.prompt_tokens,
        a.completion_tokens + b.completion_tokens,
        a.total_tokens + b.total_tokens,
    )


class Diverged(Exception):
    """A member asked for the whole answer again said something else than the part sent."""


class Tail:
    """A continuation's chunks as the client gets them: past the part already sent when the
    member repeats it (a regenerated answer, an echoing prefill), without reasoning (the client
    has the reasoning of the answer it began with), its usage added to what the attempts before
    it spent. `text` grows with what is forwarded."""

    __slots__ = ("_owed", "calling", "finished", "spent", "text", "usage")

    def __init__(self, sent: str, repeats: bool, spent: Usage) -> None:
        self._owed = sent if repeats else ""  # what the member must say before anything new
        self.text = [sent]
        self.spent = spent
        self.usage: Usage | None = None  # the last usage the member reported
        self.calling = False
        self.finished = False

    @property
    def forwarding(self) -> bool:
        """Whether the member is past the part already sent."""
        return not self._owed

    def take(self, block: list[Chunk]) -> list[Chunk]:
        """The chunks of `block` to forward; raises `Diverged`."""
        out: list[Chunk] = []
        for chunk in block:
            content = chunk.content
            if self._owed:
                content = self._repeated(chunk)
            usage = chunk.usage
            if usage is not None:
                self.usage = usage
                usage = added(self.spent, usage)
            if content or chunk.tool_calls or chunk.finish_reason is not None or usage is not None:
                out.append(Chunk(content, "", chunk.tool_calls, chunk.finish_reason, usage))
                self.text.append(content)
                self.calling = self.calling or bool(chunk.tool_calls)
                self.finished = self.finished or chunk.finish_reason is not None
        return out

    def _repeated(self, chunk: Chunk) -> str:
        """What `chunk` says past the part owed; raises `Diverged` if it says otherwise."""
        owed, content = self._owed, chunk.content
        n = min(len(owed), len(content))
        if content[:n] != owed[:n]:
            raise Diverged
        self._owed = owed = owed[n:]
        if owed and (chunk.tool_calls or chunk.finish_reason is not None):
            raise Diverged  # it ended, or called a tool, before saying all of it
        return content[n:]
