"""One adapter for every OpenAI-compatible provider: the HTTP exchange, its timeouts and its
failures, over the pure translations of `openai_wire`."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from ..errors import (
    UpstreamError,
    UpstreamProtocol,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ..http_client import BadResponse, Endpoint, Endpoints, Response
from ..ratelimits import RateReading, read_error_body, read_headers
from ..schemas import ChatRequest, Chunk
from ..sse import SSEDecoder
from .openai_wire import STREAM_ENDS, parse_events, request_body, status_error
from .presets import LOCAL_KEY, ProviderSpec
from .protocol import Answer, Embedded

_NEVER = float("inf")


class _Watch:
    """Ends a stream whose upstream sent nothing for `limit` seconds while it was awaited, or
    that is still going at `deadline` (the total timeout, on the loop's clock).

    Per block it costs two assignments (`since`), not a new timer per socket read; one timer
    per `limit` seconds checks the stream. Silence counts from the later of the pending read's
    start and the last bytes to arrive (a read in bulk spans many arrivals).
    """

    __slots__ = (
        "_deadline",
        "_handle",
        "_limit",
        "_loop",
        "_provider",
        "_response",
        "since",
        "time",
    )

    def __init__(
        self, provider: str, limit: float | None, deadline: float, response: Response
    ) -> None:
        self._provider = provider
        self._limit = limit
        self._deadline = deadline
        self._loop = loop = asyncio.get_running_loop()
        self._response = response
        self.time = loop.time
        self.since: float | None = None  # when the pending read began; None between reads
        self._handle: asyncio.TimerHandle | None = None
        self._schedule(loop.time())

    def _schedule(self, start: float) -> None:
        when = self._deadline if self._limit is None else min(start + self._limit, self._deadline)
        if when != _NEVER:
            self._handle = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        self._handle = None
        since = self.since  # silence began then, or when bytes last came, whichever is later
        if since is not None:
            since = max(since, self._response.last_data)
        if now >= self._deadline:
            message = "the answer took longer than the total timeout"
        elif self._limit is None or since is None or now - since < self._limit:
            self._schedule(now if since is None else since)
            return
        else:
            message = "no data within the read timeout"
        self._response.fail(UpstreamTimeout(self._provider, message))

    def stop(self) -> None:
        """Stop watching (the stream ended, one way or another)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _Listed(msgspec.Struct):
    id: str


class _ModelList(msgspec.Struct):
    data: list[_Listed]


class OpenAICompatible:
    """A provider speaking the OpenAI chat-completions wire format over one shared HTTP client
    (`client`: it, or a view of it that trusts the provider's own CAs)."""

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        name: str | None = None,
        api_key: str,
        base_url: str,
        client: Endpoints,
        read_timeout: float | None = None,
        total_timeout: float | None = None,
        max_answer_bytes: int = 32 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self._name = name or spec.name
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        self._endpoint = client.endpoint(base_url.rstrip("/") + spec.chat_path, headers)
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._json_headers = {**headers, "Accept": "application/json"}
        self._embeddings: dict[str, Endpoint] = {}
        self._models: Endpoint | None = None
        # What error texts are cleaned of; a local server's placeholder key ("local") is no
        # secret, and removing it would mangle "localhost" in its errors.
        self._key = "" if api_key == LOCAL_KEY else api_key
        self._read_timeout = read_timeout
        self._total_timeout = total_timeout
        self._max_answer_bytes = max_answer_bytes
        self._clock = clock

    @property
    def name(self) -> str:
        """The configured name (by default the preset's: `groq`, `cerebras`, ...)."""
        return self._name

    async def open(self, request: ChatRequest) -> Answer:
        """Send `request`; the answer once the upstream's head says it began. Every failure,
        now or during the blocks, is an `UpstreamError`.

        `total_timeout` bounds the whole exchange; `read_timeout` each wait for the upstream:
        for its response headers (connecting included), then for every block of the stream.
        """
        exchange = self._exchange(request)
        # Its first step posts and reads the head: from then on, closing it frees the response.
        rate = await anext(exchange)
        return Answer(rate, exchange)

    async def embed(self, model: str, body: Mapping[str, Any]) -> Embedded:
        """Post `body` to `model`'s embeddings endpoint; the whole answer. The head, then the
        body, each within the read timeout, and the exchange within the total timeout.
        Failures: `UpstreamError`."""
        endpoint = self._embeddings_endpoint(model)
        reading, data = await self._whole(lambda: endpoint.post(msgspec.json.encode(body)))
        rate = reading if reading.windows or reading.retry_at is not None else None
        return Embedded(rate, data)

    async def models(self) -> list[str]:
        """The model ids its `GET …/models` lists (Gemini's `models/` prefix taken off), within
        the read and total timeouts. Failures: `UpstreamError`."""
        if self._models is None:
            path = self.spec.chat_path.removesuffix("/chat/completions") + "/models"
            self._models = self._client.endpoint(self._base_url + path, self._json_headers)
        _, data = await self._whole(self._models.get)
        try:
            listed = msgspec.json.decode(data, type=_ModelList)
        except msgspec.DecodeError as exc:
            raise UpstreamProtocol(self.name, "its model list is not an OpenAI list") from exc
        return [m.id.removeprefix("models/") for m in listed.data]

    async def _whole(self, send: Callable[[], Awaitable[Response]]) -> tuple[RateReading, bytes]:
        """`send`'s response read whole: its head's rate reading and its body. The head, then
        the body, each within the read timeout, and the exchange within the total timeout.
        Failures: `UpstreamError`."""
        response: Response | None = None
        try:
            async with asyncio.timeout(self._total_timeout):
                async with asyncio.timeout(self._read_timeout):
                    response = await send()
                now = self._clock()
                reading = read_headers(self.spec.rate_style, response.headers, now, now)
                async with asyncio.timeout(self._read_timeout):
                    if response.status >= 400:
                        error = await response.read(partial=True)
                        raise self._status_error(response.status, error, response)
                    data = await response.read(self._max_answer_bytes + 1)
            if len(data) > self._max_answer_bytes:
                raise UpstreamProtocol(self.name, "the answer is over max_answer_bytes")
            return reading, data
        except UpstreamError as exc:
            exc.redact(self._redact)
            raise
        except TimeoutError as exc:
            raise UpstreamTimeout(self.name, "no whole answer within the timeouts") from exc
        except (BadResponse, OSError) as exc:
            raise self._failure(exc, response is not None) from exc
        finally:
            if response is not None:
                response.release()

    def _embeddings_endpoint(self, model: str) -> Endpoint:
        """Where `model`'s embeddings are asked for (one endpoint a model, made once)."""
        endpoint = self._embeddings.get(model)
        if endpoint is None:
            offer = self.spec.embeddings
            if offer is None:
                raise UpstreamProtocol(self.name, "this provider has no embeddings endpoint")
            root = self._base_url
            if offer.from_origin:
                parts = urlsplit(root)
                root = f"{parts.scheme}://{parts.netloc}"
            url = root + offer.path.replace("{model}", model)
            endpoint = self._embeddings[model] = self._client.endpoint(url, self._json_headers)
        return endpoint

    async def _exchange(self, request: ChatRequest) -> AsyncGenerator[Any, None]:
        """The head's rate reading (or None), then the answer's chunks, a list per block read."""
        watch: _Watch | None = None
        response: Response | None = None
        deadline = asyncio.get_running_loop().time() + (self._total_timeout or _NEVER)
        try:
            response = await self._post(request, deadline)
            watch = _Watch(self.name, self._read_timeout, deadline, response)
            yield await self._head(response, watch)
            # Past its first token a whole answer is read at once, or until the stream may end.
            rest = STREAM_ENDS if request.whole else None
            until: tuple[bytes, ...] | None = None
            time, read = watch.time, response.readany
            # A whole answer is held until its end: its size is bounded (a stream is not held).
            decoder = SSEDecoder(self._max_answer_bytes if request.whole else None)
            finished = counted = False
            while True:
                watch.since = time()
                block = await read(until)
                watch.since = None
                try:
                    events = decoder.feed(block) if block else decoder.close()
                except ValueError as exc:  # past a limit
                    raise UpstreamProtocol(self.name, str(exc)) from exc
                chunks, done, error = parse_events(self.name, events)
                if chunks:
                    finished = finished or _finishes(chunks)
                    counted = counted or any(chunk.usage is not None for chunk in chunks)
                    yield chunks
                    until = rest
                if error is not None:
                    raise error
                if not block:
                    break
                # The finish reason and the usage are the whole answer, `[DONE]` or not: a
                # provider that then stalls or never ends its body does not hold it.
                if done or (finished and counted):
                    # The end of the body is normally on its way: read it, and the connection
                    # goes back to the pool (silence now is silence too).
                    response.release_after_end(self._read_timeout)
                    return
            if not finished:
                raise UpstreamProtocol(self.name, "the stream ended before the answer was complete")
        except UpstreamError as exc:
            exc.redact(self._redact)
            raise
        except (BadResponse, OSError) as exc:
            raise self._failure(exc, response is not None) from exc
        finally:
            if watch is not None:
                watch.stop()
            if response is not None:
                response.release()  # nothing, if the stream's end already released it

    async def _head(self, response: Response, watch: _Watch) -> RateReading | None:
        """The rate reading the head holds, if any; an error response raises its error."""
        now = self._clock()
        reading = read_headers(self.spec.rate_style, response.headers, now, now)
        if response.status >= 400:
            raise await self._refusal(response, watch)
        return reading if reading.windows or reading.retry_at is not None else None

    async def _post(self, request: ChatRequest, deadline: float) -> Response:
        """The response's head, within the read timeout (connecting included) and `deadline`."""
        read_limit = asyncio.get_running_loop().time() + (self._read_timeout or _NEVER)
        limit = min(read_limit, deadline)
        waiting = asyncio.timeout_at(None if limit == _NEVER else limit)
        try:
            async with waiting:
                return await self._endpoint.post(request_body(self.spec, request))
        except TimeoutError as exc:
            if not waiting.expired():
                raise UpstreamTimeout(self.name, str(exc) or "timed out") from exc
            raise UpstreamTimeout(
                self.name,
                "no response within the read timeout"
                if read_limit <= deadline
                else "the answer took longer than the total timeout",
            ) from exc

    async def _refusal(self, response: Response, watch: _Watch) -> UpstreamStatus:
        """The error an HTTP error response stands for."""
        watch.since = watch.time()
        # A body cut or stalled is taken as far as it came: the status and headers already
        # say what happened, and when to retry.
        body = await response.read(partial=True)
        return self._status_error(response.status, body, response)

    def _failure(self, exc: BadResponse | OSError, answered: bool) -> UpstreamError:
        """The gateway error for a failure of the exchange itself."""
        if isinstance(exc, BadResponse):
            return UpstreamProtocol(self.name, self._redact(str(exc)))
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(self.name, "timed out")
        if answered:
            return UpstreamUnreachable(self.name, "the connection was cut mid-answer")
        reason = self._redact(str(exc)) or type(exc).__name__
        return UpstreamUnreachable(self.name, f"connection failed: {reason}")

    def _status_error(self, status: int, body: bytes, response: Response) -> UpstreamStatus:
        now = self._clock()
        if self._key:  # before anything reads or cuts the body: no key, not even a part
            body = body.replace(self._key.encode(), b"[redacted]")
        error = status_error(self.name, status, body, response.headers)
        error.rate = read_headers(self.spec.rate_style, response.headers, now, now)
        told = read_error_body(self.spec.rate_style, status, body, now, now)
        error.retry_at = error.rate.retry_at or told.retry_at
        error.exhausted, error.period = told.exhausted, told.period
        # The client is told when to retry in whole seconds, as read: never the header's text.
        error.headers = {}
        if error.retry_at is not None:
            error.headers["Retry-After"] = str(max(0, math.ceil(error.retry_at - now)))
        return error

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if self._key else text


def _finishes(chunks: list[Chunk]) -> bool:
    """Whether one of `chunks` has a finish reason (the last, or one a usage chunk follows)."""
    if chunks[-1].finish_reason is not None:
        return True
    return len(chunks) > 1 and any(chunk.finish_reason is not None for chunk in chunks)
