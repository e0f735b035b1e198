"""Groq's wire shapes: chunks with `x_groq`, nested error bodies, Go-duration rate headers.

Shapes follow reference/providers.md A.1.1-A.1.3, B.1 and B.3 (Groq docs and captures, 2024-2026).
"""

from __future__ import annotations

from .wire import JSON, ErrorSpec, RateSnapshot, Reply, ToolCall, Usage

STATIC_HEADERS = {"x-groq-region": "local"}

_ORG = "org_fake0000000000000000000000"
_UPGRADE = (
    "Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing"
)
_INVALID = "invalid_request_error"
_SERVER = "internal_server_error"

ERRORS: dict[int, ErrorSpec] = {
    400: ErrorSpec(
        400, _INVALID, "context_length_exceeded", "messages",
        "Please reduce the length of the messages or completion.",
    ),
    401: ErrorSpec(401, _INVALID, "invalid_api_key", None, "Invalid API Key"),
    402: ErrorSpec(
        402, _INVALID, "payment_required", None,
        "Payment required. Add a payment method at https://console.groq.com/settings/billing",
    ),
    403: ErrorSpec(403, "permission_error", "permission_denied", None, "Forbidden"),
    404: ErrorSpec(
        404, _INVALID, "model_not_found", None,
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    413: ErrorSpec(
        413, "tokens", "rate_limit_exceeded", None,
        f"Request too large for model `{{model}}` in organization `{_ORG}` service tier "
        "`on_demand` on tokens per minute (TPM): Limit {limit}, Requested {requested}, please "
        f"reduce your message size and try again. {_UPGRADE}",
    ),
    422: ErrorSpec(422, _INVALID, None, None, "Unprocessable Entity"),
    429: ErrorSpec(
        429, "tokens", "rate_limit_exceeded", None,
        f"Rate limit reached for model `{{model}}` in organization `{_ORG}` service tier "
        "`on_demand` on tokens per minute (TPM): Limit {limit}, Used {limit}, Requested "
        f"{{requested}}. Please try again in {{retry}}. {_UPGRADE}",
    ),
    500: ErrorSpec(500, _SERVER, "internal_server_error", None, "Internal Server Error"),
    502: ErrorSpec(502, _SERVER, None, None, "Bad Gateway"),
    # Captured 503 bodies carry no `code`: only the status tells "over capacity".
    503: ErrorSpec(
        503, _SERVER, None, None,
        "{model} is currently over capacity. Please try again and back off exponentially. "
        "Visit https://groqstatus.com to see if there is an active incident.",
    ),
}  # fmt: skip

CODED_ERRORS: dict[str, ErrorSpec] = {
    "model_decommissioned": ErrorSpec(
        400, _INVALID, "model_decommissioned", None,
        "The model `{model}` has been decommissioned and is no longer supported. Please refer "
        "to https://console.groq.com/docs/deprecations for a recommendation on which model to "
        "use instead.",
    ),
    "model_not_found": ERRORS[404],
    "invalid_api_key": ERRORS[401],
    "rate_limit_exceeded": ERRORS[429],
    "capacity_exceeded": ErrorSpec(
        498, "capacity_exceeded", "capacity_exceeded", None,
        "`flex` tier capacity exceeded. Please try again later.",
    ),
    "unknown_url": ErrorSpec(
        404, _INVALID, "unknown_url", None,
        "Unknown request URL: {method} {path}. Please check the URL for typos, or see the docs "
        "at https://console.groq.com/docs/",
    ),
}  # fmt: skip


def duration(seconds: float) -> str:
    """Groq writes durations as Go's `time.Duration` does (here to 10 ms): `940ms`, `2m59.56s`."""
    centis = round(max(seconds, 0.0) * 100)
    if centis == 0:
        return "0s"
    if centis < 100:
        return f"{centis * 10}ms"
    minutes, centis = divmod(centis, 6000)
    hours, minutes = divmod(minutes, 60)
    secs = f"{centis // 100}.{centis % 100:02d}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def rate_headers(snap: RateSnapshot) -> dict[str, str]:
    """`x-ratelimit-*` as Groq sends them: requests are per day, tokens per minute."""
    return {
        "x-ratelimit-limit-requests": str(snap.limit_requests),
        "x-ratelimit-limit-tokens": str(snap.limit_tokens),
        "x-ratelimit-remaining-requests": str(snap.remaining_requests),
        "x-ratelimit-remaining-tokens": str(snap.remaining_tokens),
        "x-ratelimit-reset-requests": duration(snap.reset_requests),
        "x-ratelimit-reset-tokens": duration(snap.reset_tokens),
    }


def _error_fields(spec: ErrorSpec) -> JSON:
    fields: JSON = {"message": spec.message, "type": spec.type}
    if spec.param is not None:
        fields["param"] = spec.param
    if spec.code is not None:
        fields["code"] = spec.code
    return fields


def invalid(message: str, param: str | None) -> ErrorSpec:
    """A refused request: 400 `invalid_request_error`, naming the parameter, without a code."""
    return ErrorSpec(400, _INVALID, None, param, message)


def error_body(spec: ErrorSpec) -> JSON:
    """Groq nests every error: `{"error": {"message", "type", "code"?, "param"?}}`."""
    return {"error": _error_fields(spec)}


def stream_error(spec: ErrorSpec) -> JSON:
    """The `data:` payload Groq sends when a stream fails after it started."""
    return {"error": _error_fields(spec)}


def usage_body(usage: Usage) -> JSON:
    return {
        "queue_time": usage.queue_time,
        "prompt_tokens": usage.prompt_tokens,
        "prompt_time": usage.prompt_time,
        "completion_tokens": usage.completion_tokens,
        "completion_time": usage.completion_time,
        "total_tokens": usage.total_tokens,
        "total_time": usage.total_time,
    }


def _stream_usage(usage: Usage) -> JSON:
    body = usage_body(usage)
    if usage.reasoning_tokens:
        body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return body


def _chunk(reply: Reply, choices: list[JSON]) -> JSON:
    return {
        "id": reply.completion_id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": reply.fingerprint,
        "choices": choices,
    }


def _choice(delta: JSON, finish_reason: str | None = None) -> JSON:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def role_chunk(reply: Reply) -> JSON:
    chunk = _chunk(reply, [_choice({"role": "assistant", "content": ""})])
    chunk["x_groq"] = {"id": reply.request_id, "seed": reply.seed}
    return chunk


def delta_chunk(reply: Reply, delta: JSON) -> JSON:
    return _chunk(reply, [_choice(delta)])


def reasoning_delta(model: str, text: str) -> JSON:
    """gpt-oss reasoning arrives on the `analysis` channel (live capture 2026-08-12)."""
    if "gpt-oss" in model:
        return {"reasoning": text, "channel": "analysis"}
    return {"reasoning": text}


def tool_call_deltas(call: ToolCall) -> list[JSON]:
    return call.deltas()


def finish_chunks(
    reply: Reply, usage: Usage, finish_reason: str, include_usage: bool
) -> list[JSON]:
    """The finish chunk (usage under `x_groq`), then with `include_usage` a `choices: []` one."""
    body = _stream_usage(usage)
    finish = _chunk(reply, [_choice({}, finish_reason)])
    finish["x_groq"] = {"id": reply.request_id, "usage": body}
    if not include_usage:
        return [finish]
    finish["usage"] = body
    extra = _chunk(reply, [])
    extra["usage"] = body
    extra["service_tier"] = "on_demand"
    return [finish, extra]


def completion(reply: Reply, message: JSON, usage: Usage, finish_reason: str) -> JSON:
    body = usage_body(usage)
    body["prompt_tokens_details"] = {"cached_tokens": 0}
    body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return {
        "id": reply.completion_id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": body,
        "usage_breakdown": None,
        "system_fingerprint": reply.fingerprint,
        "service_tier": "on_demand",
        "x_groq": {
            "id": reply.request_id,
            "seed": reply.seed,
            "usage": {"dram_cached_tokens": 0, "sram_cached_tokens": 0},
        },
    }


def model_entry(model_id: str, created: int) -> JSON:
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "Groq",
        "active": True,
        "context_window": 131072,
        "public_apps": None,
        "max_completion_tokens": 65536,
    }
