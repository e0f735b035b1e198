"""The failover loop: start an answer on the first member that gives one, within bounds.

Members are tried in the order the rationing plans (headroom first); a member failing before
its first chunk hands the request to the next when the failure's verdict allows (`verdicts`),
up to `max_attempts` tries and one overall deadline. For a whole answer (a client that did not
ask for a stream) that holds until its last chunk: the client has seen nothing yet. Every
attempt is settled and recorded, whatever its end: the stream handed to the API is wrapped so
that its end, its failure or the client leaving is recorded too. A stream whose member fails
after its first chunk reached the client goes on on the next member when it can (`_Rescue`,
`continuation`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncGenerator, Callable, Collection
from contextlib import aclosing
from dataclasses import dataclass, field

import msgspec

from .continuation import Diverged, Prefills, Sent, Tail, added, refuses_prefill
from .errors import (
    UpstreamError,
    UpstreamStatus,
    UpstreamTimeout,
)
from .params import missing
from .providers import Provider
from .rationing import Rationing, Ticket
from .refusals import pooled_429, refuse, refuse_images, refuse_withdrawn, too_large
from .routing import Deployment, Member, Route
from .schemas import ChatRequest, Chunk, Usage
from .tokens import text_tokens
from .verdicts import Retry, retry_of

log = logging.getLogger("ai_api.attempts")


SAME_MEMBER_WAIT = 2.0
"""The longest wait for a member's second chance on a fallback route (a 429's retry-after)."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """How hard to try: attempts, the deadline for a first chunk overall, and per attempt."""

    max_attempts: int = 3
    deadline: float = 60.0
    first_token_timeout: float = 10.0
    probe_timeout: float = 5.0  # the first chunk's wait when the attempt probes an open circuit
    continuation: bool = True  # a stream whose member fails mid-answer goes on on the next


@dataclass(slots=True)
class Opened:
    """A stream that has produced its first block of chunks: who serves it and after how many
    tries."""

    deployment: Deployment
    first: list[Chunk] | None
    chunks: AsyncGenerator[list[Chunk], None]
    attempts: int
    continued_by: list[str] = field(default_factory=list)
    """The providers that went on with the answer after its member failed mid-stream (filled
    as it streams)."""
    cache: str | None = None
    """`hit`: replayed from the answer cache (no provider asked); `miss`: asked, and kept if it
    ends well; None: the cache was not looked at."""


class Ask(msgspec.Struct, frozen=True):
    """One client request as the failover loop needs it."""

    request_id: str
    prompt_tokens: int
    max_tokens: int | None
    required: Collection[str]
    build: Callable[[Deployment], ChatRequest]
    whole: bool = False  # the client wants the answer at once: fail over until its end
    images: bool = False  # the messages carry images: members known not to take them are skipped
    prefer: str | None = None  # the member that served this conversation (`ai_api.affinity`)
    gone: Collection[tuple[str, str]] = ()  # (provider, model) withdrawn: not tried (`catalogue`)


def _candidates(route: Route, members: list[Member], ask: Ask) -> list[Member]:
    """The members that may take `ask`: they take its fields, their provider still lists
    their model, they take its images; refused in the API's shape when none does."""
    members = [m for m in members if not missing(m.deployment.spec, ask.required)]
    if not members:
        refuse(route, ask.required)
    if ask.gone:
        members = [m for m in members if (m.deployment.name, m.deployment.model) not in ask.gone]
        if not members:
            refuse_withdrawn(route)
    if ask.images:
        members = [m for m in members if m.deployment.images is not False]
        if not members:
            refuse_images(route)
    return members


async def open_stream(
    route: Route,
    ask: Ask,
    rationing: Rationing,
    bounds: Bounds,
    prefills: Prefills | None = None,
) -> Opened:
    """Start the answer; raise the last failure (naming every attempt) or a pooled 429.
    `prefills`: what is known of the members' prefill dialects, for continuations."""
    members = _candidates(route, route.order(await rationing.turn(route)), ask)

    loop = asyncio.get_running_loop()
    tries = _Tries(
        route, list(await rationing.plan(route, members, ask.prefer)), bounds, loop.time()
    )
    failures: list[str] = []
    error: UpstreamError | None = None
    while tries.queue:
        m = tries.queue.pop(0)
        d = m.deployment
        ticket = await tries.claim(m, ask, rationing)
        if ticket is None:
            continue
        tries.attempts += 1
        # A probe of a member that was failing must not hold the request long.
        timeout = bounds.probe_timeout if ticket.hold.probe else bounds.first_token_timeout
        wait = max(0.0, min(timeout, tries.deadline - loop.time()))
        rescue = _Rescue.of(route, ask, rationing, bounds, prefills, tries.queue, tries.attempts)
        chunks = _tracked(d.provider, ask.build(d), rationing, ticket, wait, rescue)
        try:
            first = await anext(chunks, None)
            if ask.whole and first is not None:
                chunks = replay([chunk async for chunk in chunks])
        except UpstreamError as exc:
            error = exc
            await chunks.aclose()
        except BaseException:
            await chunks.aclose()
            raise
        else:
            return Opened(d, first, chunks, tries.attempts, rescue.continued_by if rescue else [])
        failures.append(error.message)
        log.warning(
            "attempt %d on %s failed (%s): %s",
            tries.attempts,
            d.public_name,
            error.code,
            error.message,
        )
        await tries.after(m, error, rationing.clock())
    if error is None:
        lost = tries.lost
        if lost and all(math.isinf(at) for at in lost):
            raise too_large(route, ask.prompt_tokens, ask.request_id, members)
        soonest = min((at for at in lost if not math.isinf(at)), default=None)
        raise await pooled_429(route, soonest, rationing, members)
    if len(failures) > 1:
        error.message = f"{len(failures)} attempts failed: " + "; ".join(failures)
    error.headers["X-AI-API-Attempts"] = str(tries.attempts)
    raise error


@dataclass(slots=True)
class _Tries:
    """The members left to try for one request, and what bounds the trying."""

    route: Route
    queue: list[Member]
    bounds: Bounds
    started: float  # on the event loop's clock
    attempts: int = 0
    again: set[str] = field(default_factory=set)  # members given their second chance (by key)
    unguessed: list[Member] = field(default_factory=list)
    """Members out of room by the preset's guesses, tried again last on evidence alone."""
    lost: list[float] = field(default_factory=list)
    """When the members refused by evidence have room again (infinity: never)."""

    @property
    def deadline(self) -> float:
        return self.started + self.bounds.deadline

    async def claim(self, member: Member, ask: Ask, rationing: Rationing) -> Ticket | None:
        """Begin an attempt on `member`; None when it has no room (or another request took
        its probe). A member refused while the preset's guesses counted is tried again after
        the others, on evidence alone: a guess never refuses a request by itself."""
        d = member.deployment
        guesses = member not in self.unguessed
        prompt, cap = ask.prompt_tokens, d.cap(ask.max_tokens)
        ticket = await rationing.begin(
            d, self.route.name, ask.request_id, prompt, cap, guesses=guesses
        )
        if isinstance(ticket, Ticket):
            ticket.counts = d.member not in self.again  # a second chance's failure is not counted
            return ticket
        if guesses and d.guessed:
            self.unguessed.append(member)
            self.queue.append(member)
        else:
            self.lost.append(ticket)
        return None

    async def after(self, failed: Member, error: UpstreamError, now: float) -> None:
        """What is left to try once `failed` failed with `error` (`now` on the rationing clock)."""
        retry = retry_of(error.outcome())
        if retry is Retry.LARGER_CONTEXT:
            self.queue = [m for m in self.queue if _may_fit(m.deployment, failed.deployment)]
        loop_now = asyncio.get_running_loop().time()
        if (
            retry is Retry.NONE
            or self.attempts >= self.bounds.max_attempts
            or loop_now >= self.deadline
        ):
            self.queue = []
            return
        name = failed.deployment.member
        wait = None if name in self.again else _brief_wait(self.route, error, now)
        if wait is not None and loop_now + wait < self.deadline:
            self.again.add(name)
            await asyncio.sleep(wait)
            self.queue.insert(0, failed)


async def replay(blocks: list[list[Chunk]]) -> AsyncGenerator[list[Chunk], None]:
    """`blocks` as a stream (a whole answer read ahead, or one the cache kept)."""
    for block in blocks:
        yield block


def _brief_wait(route: Route, error: UpstreamError, now: float) -> float | None:
    """How long to wait before trying the member that failed once more, on a route whose order
    the user chose (`fallback`): a lone 5xx, or a 429 that asks for at most `SAME_MEMBER_WAIT`
    seconds. None: go on to the next member at once (round-robin routes always do)."""
    if route.strategy != "fallback" or not isinstance(error, UpstreamStatus):
        return None
    status = error.upstream_status
    if status == 429 and error.retry_at is None:
        return None  # no hint: the verdict rests it for a minute
    if status == 429 or status >= 500:
        wait = max(0.0, (error.retry_at or now) - now)
        return wait if wait <= SAME_MEMBER_WAIT else None
    return None


def _may_fit(candidate: Deployment, failed: Deployment) -> bool:
    """Whether a prompt too long for `failed`'s model may fit `candidate`: another model whose
    window is larger, or not known (never the same model again)."""
    if candidate.model == failed.model:
        return False
    if candidate.context is None or failed.context is None:
        return True
    return candidate.context > failed.context


async def _tracked(
    provider: Provider,
    request: ChatRequest,
    rationing: Rationing,
    ticket: Ticket,
    first_wait: float,
    rescue: _Rescue | None = None,
) -> AsyncGenerator[list[Chunk], None]:
    """The blocks of the answer of `provider` to `request`, its rate reading observed, settled
    and recorded; an upstream that sends nothing within `first_wait` seconds is a timeout.
    With a `rescue`, a failure after the first block goes on with the rest of the answer from
    the next member when it can."""
    usage: Usage | None = None
    blocks: AsyncGenerator[list[Chunk], None] | None = None
    kept = rescue.kept if rescue is not None else []
    rest: AsyncGenerator[list[Chunk], None] | None = None
    try:
        try:
            async with asyncio.timeout(first_wait):
                answer = await provider.open(request)
                blocks = answer.blocks
                if answer.rate is not None:
                    await rationing.observe(ticket, answer.rate)
                block = await anext(blocks, None)
        except TimeoutError:
            message = f"no first token within {first_wait:g} s"
            raise UpstreamTimeout(ticket.deployment.name, message) from None
        ticket.first_token = rationing.clock()
        if block is not None:
            usage = _counted(ticket, block, usage)
            kept.append(block)
            yield block
            async for block in blocks:
                usage = _counted(ticket, block, usage)
                kept.append(block)
                yield block
    except UpstreamError as exc:
        await rationing.failed(ticket, exc, usage)
        sent = rescue.takes(exc) if rescue is not None else None
        if rescue is None or sent is None:
            raise
        log.warning("%s failed mid-stream: %s; continuing", ticket.deployment.public_name, exc)
        rest = rescue.resume(exc, sent, _spent(ticket, usage))
    except BaseException:
        rationing.cancelled(ticket)
        raise
    else:
        await rationing.succeeded(ticket, usage)
    finally:
        if blocks is not None:
            await blocks.aclose()
    if rest is not None:
        async with aclosing(rest):
            async for block in rest:
                yield block


def _spent(ticket: Ticket, usage: Usage | None) -> Usage:
    """What an attempt spent: the usage it reported, else the estimate the ledger records."""
    if usage is not None:
        return usage
    if ticket.first_token is None:
        return Usage()
    completion = ticket.completion_estimate
    return Usage(ticket.prompt_tokens, completion, ticket.prompt_tokens + completion)


@dataclass(slots=True)
class _Rescue:
    """What a streamed answer needs to go on on another member when its member fails after
    the first block: the request, the members not tried yet, the blocks sent."""

    route: Route
    ask: Ask
    rationing: Rationing
    bounds: Bounds
    prefills: Prefills
    queue: list[Member]
    attempts: int
    kept: list[list[Chunk]] = field(default_factory=list)
    continued_by: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        route: Route,
        ask: Ask,
        rationing: Rationing,
        bounds: Bounds,
        prefills: Prefills | None,
        queue: list[Member],
        attempts: int,
    ) -> _Rescue | None:
        """The rescue of attempt number `attempts`, or None where continuation is off (a
        whole answer fails over until its end instead)."""
        if ask.whole or not (bounds.continuation and route.continuation):
            return None
        return cls(route, ask, rationing, bounds, prefills or Prefills(), queue, attempts)

    def takes(self, failure: UpstreamError) -> Sent | None:
        """What was sent, if the answer may go on after `failure` (a failure before the
        first block is the failover loop's)."""
        if not self.kept or not self.queue or self.attempts >= self.bounds.max_attempts:
            return None
        sent = Sent.of(self.kept)
        return sent if sent.continuable(failure) else None

    async def resume(
        self, failure: UpstreamError, sent: Sent, spent: Usage
    ) -> AsyncGenerator[list[Chunk], None]:
        """The rest of the answer from the next members that can give it; else `failure`,
        its message saying why not."""
        reasons: list[str] = []
        text = sent.text
        while self.queue and self.attempts < self.bounds.max_attempts:
            member = self.queue.pop(0)
            d = member.deployment
            ticket = await self.rationing.begin(
                d,
                self.route.name,
                self.ask.request_id,
                self.ask.prompt_tokens + text_tokens(text),
                d.cap(self.ask.max_tokens),
                guesses=False,  # an answer under way: only evidence stops it
            )
            if not isinstance(ticket, Ticket):
                continue
            self.attempts += 1
            prefill = self.prefills.of(d) if text else None
            request = self.ask.build(d)
            if prefill is not None:
                request = msgspec.structs.replace(request, prefill=text)
            tail = Tail(text, prefill is None or prefill.echoes, spent)
            wait = self.bounds.first_token_timeout
            chunks = _tracked(d.provider, request, self.rationing, ticket, wait)
            named = False
            try:
                async for block in chunks:
                    out = tail.take(block)
                    if out:
                        if not named:
                            self.continued_by.append(d.name)
                            named = True
                        yield out
                return
            except Diverged:
                reasons.append(f"{d.name} answered anew, and differently")
                ticket.diverged = True
                break
            except UpstreamError as exc:
                reasons.append(exc.message)
                if prefill is not None and len(tail.text) == 1 and refuses_prefill(exc):
                    # Asked again at once for the whole answer, kept past the part sent.
                    log.warning("%s refused a prefill: asked anew from now on", d.public_name)
                    self.prefills.refused(d)
                    self.queue.insert(0, member)
                    continue
                now = Sent("".join(tail.text), tail.calling, tail.finished)
                if not now.continuable(exc):
                    break
                text, spent = now.text, added(tail.spent, _spent(ticket, tail.usage))
            finally:
                await chunks.aclose()
        failure.message += "; not continued: " + ("; ".join(reasons) or "no member had room")
        raise failure


def _counted(ticket: Ticket, block: list[Chunk], usage: Usage | None) -> Usage | None:
    """Count `block`'s characters on `ticket`; the usage it reports, else `usage`."""
    for chunk in block:
        ticket.chars += len(chunk.content) + len(chunk.reasoning)
        if chunk.usage is not None:
            usage = chunk.usage
    return usage
