"""Every error the gateway answers with, in one tree.

    GatewayError                     any failure that reaches a client
    ├── InvalidRequest       400     the client's request is wrong
    │   ├── PayloadTooLarge  413     the body is over the configured limit
    │   ├── UnsupportedMediaType 415 a JSON endpoint was sent another Content-Type
    │   ├── UnknownHost      421     the Host header names no host the gateway serves
    │   └── RequestTimeout   408     the client took too long to send its body
    ├── Unauthorized         401     missing or wrong gateway key
    ├── CrossOrigin          403     a web page of an origin not allowed (`cors_origins`)
    ├── NotPermitted         403     the gateway key may not use this path or model
    ├── NotFound             404     unknown path or model
    ├── MethodNotAllowed     405     known path, wrong method
    ├── RateLimited          429     every member is out of headroom (Retry-After says when)
    ├── NoProviders          503     nothing is configured to answer
    ├── TooManyConnections   503     the cap on open client connections is reached
    ├── ShuttingDown         503     the gateway is stopping: the request was not answered in time
    └── UpstreamError        502     a provider failed; `provider` names it
        ├── UpstreamStatus   4xx/5xx the provider answered an HTTP error (mapped in verdicts.py)
        ├── UpstreamTimeout  504     no answer in time
        ├── UpstreamUnreachable 502  connection refused, reset or cut mid-stream
        └── UpstreamProtocol 502     the provider spoke nonsense or ended a stream early

Each error knows its HTTP status and its OpenAI-style `type` and `code`, and renders the body
`{"error": {"message", "type", "code", "param"}}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .verdicts import Ending, Outcome, client_answer


class GatewayError(Exception):
    """Base of all errors answered to clients."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.headers: dict[str, str] = headers or {}

    def __str__(self) -> str:
        return self.message  # as redacted, never the text it was made with

    def body(self) -> dict[str, Any]:
        """The JSON body a client receives."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }


class InvalidRequest(GatewayError):
    """The request cannot be served as sent."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    """The body is larger than the configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    """A JSON endpoint was sent a body that is not `application/json` (a browser form can
    send `text/plain` or form encodings across origins; it cannot send JSON)."""

    status = 415
    code = "unsupported_media_type"


class UnknownHost(InvalidRequest):
    """The `Host` header names no host this gateway serves (the mark of DNS rebinding)."""

    status = 421
    code = "unknown_host"


class RequestTimeout(InvalidRequest):
    """The body did not arrive within the body timeout."""

    status = 408
    code = "request_timeout"


class CrossOrigin(GatewayError):
    """The request comes from a web page whose origin is not allowed."""

    status = 403
    type = "invalid_request_error"
    code = "origin_not_allowed"


class Unauthorized(GatewayError):
    """The gateway requires a key and the request has none, or a wrong one."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotPermitted(GatewayError):
    """The gateway key is valid, but its scopes or models do not cover the request."""

    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(GatewayError):
    """No route at this path."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    """The path exists but not with this method."""

    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RateLimited(GatewayError):
    """Every member of the route is out of headroom; `Retry-After` says when one has room."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class NoProviders(GatewayError):
    """No provider is configured or none can take the request."""

    status = 503
    type = "server_error"
    code = "no_providers"


class TooManyConnections(GatewayError):
    """The gateway holds as many client connections as it may (`max_connections`)."""

    status = 503
    type = "server_error"
    code = "too_many_connections"


class ShuttingDown(GatewayError):
    """The gateway is stopping and its drain's grace ran out before this answer was done
    (before its first byte: a 503 with `Retry-After`; after it: the API's in-band error)."""

    status = 503
    type = "server_error"
    code = "shutting_down"


class UpstreamError(GatewayError):
    """A provider failed; `provider` is its name."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"
    ending = Ending.FAILED
    upstream_status = 0
    """The provider's HTTP status (or its error payload's); 0 when it gave none."""

    retry_at: float | None = None
    """When the provider said to retry (absolute, on the rationing clock), if it did."""
    rate: Any = None
    """The provider's rate-limit headers on this error (`ai_api.ratelimits.RateReading`)."""
    exhausted: Any = None
    """`requests` or `tokens` when the provider said which ran out."""
    period: float | None = None
    """The length of the window that ran out, when the provider said."""

    def __init__(self, provider: str, message: str, **kwargs: Any) -> None:
        super().__init__(f"{provider}: {message}", **kwargs)
        self.provider = provider

    def redact(self, clean: Callable[[str], str]) -> None:
        """Pass every text that came from the provider through `clean` (which removes the
        key): message, code, param and the headers passed on."""
        self.message = clean(self.message)
        self.code = clean(self.code)
        if self.param is not None:
            self.param = clean(self.param)
        self.headers = {name: clean(value) for name, value in self.headers.items()}

    def outcome(self, *, started: bool = False) -> Outcome:
        """This failure as `ai_api.verdicts.verdict_of` takes it; `started`: after a first chunk."""
        return Outcome(
            self.ending,
            self.upstream_status,
            self.code,
            self.retry_at,
            self.rate,
            self.exhausted,
            self.period,
            started,
        )


class UpstreamTimeout(UpstreamError):
    """The provider did not answer (or went silent) within the timeout."""

    status = 504
    code = "upstream_timeout"
    ending = Ending.TIMEOUT


class UpstreamUnreachable(UpstreamError):
    """The connection failed, or was cut before the answer was complete."""

    code = "upstream_unreachable"
    ending = Ending.UNREACHABLE


class UpstreamProtocol(UpstreamError):
    """The provider sent something that is not its documented wire format."""

    code = "upstream_protocol_error"
    ending = Ending.PROTOCOL


class UpstreamStatus(UpstreamError):
    """The provider answered with an HTTP error status (or an in-stream error payload); the
    status its client gets is `ai_api.verdicts.client_answer`'s."""

    ending = Ending.STATUS

    def __init__(
        self,
        provider: str,
        upstream_status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            provider,
            f"HTTP {upstream_status}: {message}",
            code=code or f"upstream_http_{upstream_status}",
            headers=headers,
        )
        self.upstream_status = upstream_status
        self.status, self.type = client_answer(upstream_status)
