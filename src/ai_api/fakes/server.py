"""`FakeUpstream`: a real aiohttp server on loopback speaking one provider's wire format.

It answers chat completions (streaming or not) and, in flavors that have them, embeddings; lists
its models, checks the API key, reports rate-limit headers that drain as requests arrive, and
misbehaves on demand through `Fault`s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import web

from .embeddings import as_features, embeddings_answer
from .flavors import FLAVORS, Flavor
from .limits import RateBook
from .plan import make_plan
from .rules import Violation, violation
from .stream import Exchange, Fault, write_completion, write_stream, write_whole
from .wire import ErrorSpec, Reply

__all__ = ["FakeUpstream", "Fault", "SeenRequest"]

log = logging.getLogger(__name__)

_NO_FAULT = Fault()
_JSON = "application/json"
_MAX_BODY = 16 * 1024 * 1024
# Stands in for a limit the provider does not publish: never reached, never reported.
_UNLIMITED = 10**12
# The allowances of the key of the request being answered (each request runs in its own task).
_BOOK: ContextVar[RateBook | None] = ContextVar("fake_book", default=None)


@dataclass(eq=False)
class SeenRequest:
    """One chat request as the fake saw it, and how it ended."""

    body: dict[str, Any]
    headers: Mapping[str, str]
    started: float
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    disconnected: bool = False
    status: int = 0
    peer: tuple[str, int] | None = None
    """The client's address and port: one per connection (so tests can see reuse)."""


class FakeUpstream:
    """A fake Groq, Cerebras or generic OpenAI-compatible upstream on 127.0.0.1.

    `base_url` is the server root, as the SDKs want. `api_key=None` accepts any bearer token.
    With `enforce_limits` the fake answers 429 once its request or token allowance runs dry.
    `record_requests=False` keeps `requests` empty (for long benchmark runs). A flavor's
    `mounted` copy serves elsewhere than its paths (an OpenRouter-like
    `/api/v1/chat/completions`, a Gemini-like `/v1beta/openai/chat/completions`).
    `answer_text`, when set, is every answer (and what a prefill continues), whatever the
    request: fakes that all say one text let a test check an answer stitched from two.
    `api_key` may map each of several keys to its account: each account has its own allowances
    (`books`), reported to and enforced on its keys; `revoke` makes a key refused from then
    on; `by_key` counts the chat requests each key made. `models` and `withdrawn` start as
    the flavor's; `withdraw` retires a model from the list and answers it as retired.
    """

    def __init__(
        self,
        flavor: str | Flavor,
        *,
        api_key: str | Mapping[str, str] | None = None,
        token_delay: float = 0.0,
        answer_tokens: int = 20,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        record_requests: bool = True,
        enforce_limits: bool = False,
    ) -> None:
        base = self.flavor = FLAVORS[flavor] if isinstance(flavor, str) else flavor
        self.api_key = api_key if isinstance(api_key, str) else None
        accounts = api_key if isinstance(api_key, Mapping) else None
        self.token_delay = token_delay
        self.answer_tokens = answer_tokens
        self.host = host
        self.record_requests = record_requests
        self.enforce_limits = enforce_limits
        self.default_fault: Fault | None = None
        self.answer_text: str | None = None
        self.requests: list[SeenRequest] = []
        self.hits: Counter[str] = Counter()
        self.accounts = dict(accounts or {})
        self.books = {name: self._book(clock) for name in dict.fromkeys(self.accounts.values())}
        self.limits = self._book(clock)
        self.revoked: set[str] = set()
        self.by_key: Counter[str] = Counter()
        self.models = list(base.models)
        self.withdrawn = dict(base.withdrawn)
        self._clock = clock
        self._port = port
        self._faults: deque[Fault] = deque()
        self._down: tuple[float, Fault] | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._rng = random.Random()
        self._fingerprint = f"fp_{self._rng.getrandbits(40):010x}"
        self._created = int(time.time())

    def _book(self, clock: Callable[[], float]) -> RateBook:
        base = self.flavor
        return RateBook(
            _UNLIMITED if base.requests_limit is None else base.requests_limit,
            _UNLIMITED if base.tokens_limit is None else base.tokens_limit,
            clock,
            request_window=base.request_window,
        )

    def revoke(self, key: str) -> None:
        """Refuse `key` from now on (401), as a provider does a key revoked in its console."""
        self.revoked.add(key)

    def withdraw(self, model: str) -> None:
        """Stop listing `model` and answer it as the flavor answers a retired model."""
        code = next(iter(self.flavor.withdrawn.values()), "model_not_found")
        self.models = [m for m in self.models if m != model]
        self.withdrawn[model] = code

    def restore(self, model: str) -> None:
        """List and serve `model` again."""
        self.withdrawn.pop(model, None)
        if model not in self.models:
            self.models.append(model)

    def _spent(self) -> RateBook:
        """The allowances of the running request's key (the fake's own without accounts)."""
        return _BOOK.get() or self.limits

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeUpstream has no port before start()")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_fault(self, fault: Fault, times: int = 1) -> None:
        """Apply `fault` to the next `times` chat requests, after faults already queued."""
        self._faults.extend([fault] * times)

    def heal(self) -> None:
        """Drop the faults queued, the default fault and any outage: healthy from now on."""
        self._faults.clear()
        self.default_fault = None
        self._down = None

    def down_until(self, until: float, fault: Fault) -> None:
        """Apply `fault` to every chat request that arrives before `until` on the fake's clock
        (after faults already queued), as a provider down for a while answers; then heal."""
        self._down = (until, fault)

    def _next_fault(self) -> Fault:
        if self._faults:
            return self._faults.popleft()
        if self._down is not None and self._clock() < self._down[0]:
            return self._down[1]
        return self.default_fault or _NO_FAULT

    async def start(self) -> None:
        """Bind and serve; a no-op when already serving. A restart keeps the same port."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post(self.flavor.chat_path, self._chat)
        app.router.add_get(self.flavor.models_path, self._models)
        if self.flavor.embeddings_path:
            app.router.add_post(self.flavor.embeddings_path, self._embeddings)
        if self.flavor.feature_extraction_path:
            path = self.flavor.feature_extraction_path.replace("{model}", "{model:.+}")
            app.router.add_post(path, self._embeddings)
        if self.flavor.warm_path:
            app.router.add_get(self.flavor.warm_path, self._warm)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = runner.addresses[0][1]
        self._stopping = asyncio.Event()
        self._runner = runner
        log.debug("fake %s listening on %s", self.flavor.name, self.base_url)

    async def stop(self) -> None:
        """Stop serving; stalled and paused responses are cut at once."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        await runner.cleanup()

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _headers(self, request_id: str) -> dict[str, str]:
        headers = {"x-request-id": request_id, **self.flavor.wire.STATIC_HEADERS}
        headers.update(self.flavor.rate_headers(self._spent().snapshot()))
        return headers

    def _request_id(self) -> str:
        return f"req_{self._rng.getrandbits(104):026x}"

    def _json_headers(self, retry_after: float | None = None) -> dict[str, str]:
        """A JSON answer's headers: rate-limit ones, a new request id, `retry-after` if given."""
        headers = self._headers(self._request_id())
        headers["Content-Type"] = _JSON
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        return headers

    def _json(self, status: int, body: object, retry_after: float | None = None) -> web.Response:
        headers = self._json_headers(retry_after)
        return web.Response(status=status, body=msgspec.json.encode(body), headers=headers)

    def _error(self, spec: ErrorSpec, retry_after: float | None = None) -> web.Response:
        return self._json(spec.status, self.flavor.error_body(spec), retry_after)

    def _authorized(self, request: web.Request) -> bool:
        """Whether the request's key is accepted; the running request spends its account's
        allowances from here on."""
        value = request.headers.get("Authorization", "")
        key = value.removeprefix("Bearer ")
        if key in self.revoked or not value.startswith("Bearer "):
            return False
        if self.accounts:
            account = self.accounts.get(key)
            if account is None:
                return False
            _BOOK.set(self.books[account])
            return True
        if self.api_key is None:
            return bool(key)
        return key == self.api_key

    async def _models(self, request: web.Request) -> web.Response:
        self.hits[f"GET {request.path}"] += 1
        if not self._authorized(request):
            return self._error(self.flavor.error(401))
        data = [self.flavor.wire.model_entry(m, self._created) for m in self.models]
        return self._json(200, {"object": "list", "data": data})

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """Embeddings (`fakes.embeddings`); faults apply as to chat, streaming ones aside."""
        self.hits[f"POST {request.path}"] += 1
        seen = SeenRequest(body={}, headers=request.headers, started=self._clock())
        if self.record_requests:
            self.requests.append(seen)
        exchange = Exchange(request, self._next_fault(), self._stopping, 0.0)
        try:
            response = await self._embed(exchange, seen)
            seen.status = 0 if exchange.dropped else response.status
            return response
        finally:
            seen.finished.set()

    async def _embed(self, exchange: Exchange, seen: SeenRequest) -> web.StreamResponse:
        fault = exchange.fault
        if fault.drop or (fault.headers_delay > 0 and await exchange.pause(fault.headers_delay)):
            return exchange.drop()
        if not self._authorized(exchange.request):
            return self._error(self.flavor.error(401))
        body = await self._body(exchange)
        if isinstance(body, web.Response):
            return body
        seen.body = body
        model = exchange.request.match_info.get("model") or body.get("model")
        if not isinstance(model, str) or model not in self.flavor.embedding_models:
            return self._error(self.flavor.error(404, code="model_not_found", model=model))
        features = "inputs" in body and "model" in exchange.request.match_info
        answer = embeddings_answer({"input": body["inputs"]} if features else body, model)
        if fault.status is not None or isinstance(answer, Violation):
            return self._error(*self._embeddings_refusal(fault, answer, model))
        self._spent().charge(answer["usage"]["total_tokens"])
        return self._json(200, as_features(answer, body["inputs"]) if features else answer)

    def _embeddings_refusal(
        self, fault: Fault, answer: object, model: str
    ) -> tuple[ErrorSpec, float | None]:
        """A fault's error, else the 400 for what the request broke."""
        if fault.status is not None:
            spec = self.flavor.error(
                fault.status, code=fault.code, message=fault.message, model=model
            )
            return spec, fault.retry_after
        assert isinstance(answer, Violation)
        return self.flavor.refusal(answer), None

    async def _warm(self, request: web.Request) -> web.Response:
        self.hits[f"GET {request.path}"] += 1
        return web.Response(text="OK", headers=self._headers(self._request_id()))

    async def _unknown(self, request: web.Request) -> web.Response:
        self.hits[f"{request.method} {request.path}"] += 1
        spec = self.flavor.error(code="unknown_url", method=request.method, path=request.path)
        return self._error(spec)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.hits[f"POST {request.path}"] += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen = SeenRequest(
            body={}, headers=request.headers, started=self._clock(), peer=peer and tuple(peer)
        )
        if self.record_requests:
            self.requests.append(seen)
        fault = self._next_fault()
        exchange = Exchange(request, fault, self._stopping, self.token_delay)
        response: web.StreamResponse | None = None
        try:
            response = await self._answer(exchange, seen)
            return response
        except asyncio.CancelledError:
            seen.disconnected = not self._stopping.is_set()
            raise
        except ConnectionResetError:
            seen.disconnected = not self._stopping.is_set()
            response = exchange.response or web.StreamResponse()
            return response
        finally:
            answered = exchange.response or response
            seen.status = 0 if exchange.dropped or answered is None else answered.status
            seen.finished.set()

    async def _answer(self, exchange: Exchange, seen: SeenRequest) -> web.StreamResponse:
        fault = exchange.fault
        if fault.drop:
            return exchange.drop()
        if fault.headers_delay > 0 and await exchange.pause(fault.headers_delay):
            return exchange.drop()
        if not self._authorized(exchange.request):
            return self._error(self.flavor.error(401))
        self.by_key[exchange.request.headers["Authorization"].removeprefix("Bearer ")] += 1
        body = await self._body(exchange)
        if isinstance(body, web.Response):
            return body
        seen.body = body
        problem = self._check(body)
        if problem is not None:
            return self._error(problem)
        return await self._serve(exchange, body)

    async def _body(self, exchange: Exchange) -> dict[str, Any] | web.Response:
        """The request's JSON object, or the answer refusing it."""
        try:
            body = msgspec.json.decode(await exchange.request.read())
        except msgspec.DecodeError:
            return self._refuse(None, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return self._refuse(None, "The request body must be a JSON object.")
        return body

    async def _serve(self, exchange: Exchange, body: dict[str, Any]) -> web.StreamResponse:
        """The answer to a request that passed its checks: a fault's, a 429, or the chat."""
        fault = exchange.fault
        model = body["model"]
        if fault.status is not None:
            spec = self.flavor.error(
                fault.status,
                code=fault.code,
                message=fault.message,
                retry_after=fault.retry_after,
                model=model,
            )
            headers = self._json_headers(fault.retry_after)
            error = msgspec.json.encode(self.flavor.error_body(spec))
            return await write_whole(exchange, spec.status, error, headers)
        call_id = f"call_{self._rng.getrandbits(96):024x}"
        rules, count = self.flavor.rules, self.answer_tokens
        plan = make_plan(body, self.flavor.label, rules, count, call_id, self.answer_text)
        cost = plan.usage.total_tokens
        if self.enforce_limits:
            wait = self._spent().shortfall(cost)
            if wait > 0:
                retry = float(int(wait) + 1)
                spec = self.flavor.error(429, retry_after=retry, model=model, requested=cost)
                return self._error(spec, retry)
        self._spent().charge(cost)
        reply = self._reply(model)
        headers = self._headers(reply.request_id)
        if plan.stream:
            return await write_stream(exchange, self.flavor, reply, plan, headers)
        return await write_completion(exchange, self.flavor, reply, plan, headers)

    def _refuse(self, param: str | None, message: str) -> web.Response:
        return self._error(self.flavor.refusal(Violation(param, message)))

    def _check(self, body: dict[str, Any]) -> ErrorSpec | None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            required = Violation("model", "`model` is required and must be a string.")
            return self.flavor.refusal(required)
        if model in self.withdrawn:
            return self.flavor.error(code=self.withdrawn[model], model=model)
        if model not in self.models:
            return self.flavor.error(404, code="model_not_found", model=model)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.flavor.refusal(
                Violation("messages", "`messages` must be a non-empty array.")
            )
        broken = violation(body, self.flavor.rules)
        return None if broken is None else self.flavor.refusal(broken)

    def _reply(self, model: str) -> Reply:
        bits = f"{self._rng.getrandbits(128):032x}"
        return Reply(
            completion_id=f"chatcmpl-{bits[:8]}-{bits[8:12]}-{bits[12:16]}-{bits[16:20]}-{bits[20:]}",
            request_id=self._request_id(),
            created=int(time.time()),
            model=model,
            fingerprint=self._fingerprint,
            seed=self._rng.getrandbits(31),
        )
