"""OpenAI's own wire shapes, standing in for the many OpenAI-compatible providers.

Nested errors with all four fields, usage only when `stream_options.include_usage` asks for it
(then on a final `choices: []` chunk), and `x-ratelimit-*` headers with requests and tokens per
minute, resets written like `1s` or `6m0s`.
"""

from __future__ import annotations

from . import groq_wire
from .wire import JSON, ErrorSpec, RateSnapshot, Reply, ToolCall, Usage

STATIC_HEADERS: dict[str, str] = {}

_ORG = "org-fake000000000000000000"
_INVALID = "invalid_request_error"
_SERVER = "server_error"

ERRORS: dict[int, ErrorSpec] = {
    400: ErrorSpec(
        400, _INVALID, "context_length_exceeded", "messages",
        "This model's maximum context length is {context} tokens. However, your messages "
        "resulted in {requested} tokens. Please reduce the length of the messages.",
    ),
    401: ErrorSpec(
        401, _INVALID, "invalid_api_key", None,
        "Incorrect API key provided. You can find your API key in your account settings.",
    ),
    402: ErrorSpec(
        402, _INVALID, "payment_required", None,
        "Payment required: this account has no credits left.",
    ),
    403: ErrorSpec(
        403, _INVALID, "unsupported_country_region_territory", None,
        "Country, region, or territory not supported",
    ),
    404: ErrorSpec(
        404, _INVALID, "model_not_found", "model",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    429: ErrorSpec(
        429, "tokens", "rate_limit_exceeded", None,
        f"Rate limit reached for {{model}} in organization {_ORG} on tokens per min (TPM): "
        "Limit {limit}, Used {limit}, Requested {requested}. Please try again in {retry}.",
    ),
    500: ErrorSpec(
        500, _SERVER, None, None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ErrorSpec(
        503, _SERVER, None, None, "The engine is currently overloaded, please try again later."
    ),
}  # fmt: skip

CODED_ERRORS: dict[str, ErrorSpec] = {
    "model_not_found": ERRORS[404],
    "invalid_api_key": ERRORS[401],
    "rate_limit_exceeded": ERRORS[429],
    "insufficient_quota": ErrorSpec(
        429, "insufficient_quota", "insufficient_quota", None,
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "unknown_url": ErrorSpec(404, _INVALID, None, None, "Invalid URL ({method} {path})"),
}  # fmt: skip


def duration(seconds: float) -> str:
    """OpenAI writes resets as Go durations too (`1s`, `6m0s`, `20ms`), like Groq."""
    return groq_wire.duration(seconds)


def rate_headers(snap: RateSnapshot) -> dict[str, str]:
    """OpenAI's `x-ratelimit-*` trios; here requests and tokens are both per minute."""
    return {
        "x-ratelimit-limit-requests": str(snap.limit_requests),
        "x-ratelimit-remaining-requests": str(snap.remaining_requests),
        "x-ratelimit-reset-requests": duration(snap.reset_requests),
        "x-ratelimit-limit-tokens": str(snap.limit_tokens),
        "x-ratelimit-remaining-tokens": str(snap.remaining_tokens),
        "x-ratelimit-reset-tokens": duration(snap.reset_tokens),
    }


def invalid(message: str, param: str | None) -> ErrorSpec:
    return ErrorSpec(400, _INVALID, "invalid_value", param, message)


def _error_fields(spec: ErrorSpec) -> JSON:
    return {"message": spec.message, "type": spec.type, "param": spec.param, "code": spec.code}


def error_body(spec: ErrorSpec) -> JSON:
    """OpenAI nests every error and always writes all four fields, null or not."""
    return {"error": _error_fields(spec)}


def stream_error(spec: ErrorSpec) -> JSON:
    return {"error": _error_fields(spec)}


def usage_body(usage: Usage) -> JSON:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chunk(reply: Reply, choices: list[JSON]) -> JSON:
    return {
        "id": reply.completion_id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": reply.fingerprint,
        "choices": choices,
    }


def _choice(delta: JSON, finish_reason: str | None = None) -> JSON:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def role_chunk(reply: Reply) -> JSON:
    return _chunk(reply, [_choice({"role": "assistant", "content": "", "refusal": None})])


def delta_chunk(reply: Reply, delta: JSON) -> JSON:
    return _chunk(reply, [_choice(delta)])


def reasoning_delta(model: str, text: str) -> JSON:
    return {"reasoning": text}


def tool_call_deltas(call: ToolCall) -> list[JSON]:
    return call.deltas()


def finish_chunks(
    reply: Reply, usage: Usage, finish_reason: str, include_usage: bool
) -> list[JSON]:
    """The finish chunk has no usage; `include_usage` adds a `choices: []` chunk with it."""
    finish = _chunk(reply, [_choice({}, finish_reason)])
    if not include_usage:
        return [finish]
    extra = _chunk(reply, [])
    extra["usage"] = usage_body(usage)
    return [finish, extra]


def completion(reply: Reply, message: JSON, usage: Usage, finish_reason: str) -> JSON:
    return {
        "id": reply.completion_id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": {**message, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_body(usage),
        "service_tier": "default",
        "system_fingerprint": reply.fingerprint,
    }


def model_entry(model_id: str, created: int) -> JSON:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "system"}
