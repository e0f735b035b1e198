"""Cerebras's wire shapes: usage + `time_info` chunks, top-level errors, float-second resets.

Shapes follow reference/providers.md A.2.1-A.2.3, B.2 and B.3 (Cerebras docs, SDK, captures).
"""

from __future__ import annotations

import time

from .wire import JSON, ErrorSpec, RateSnapshot, Reply, ToolCall, Usage

STATIC_HEADERS: dict[str, str] = {}

_INVALID = "invalid_request_error"
_SERVER = "internal_server_error"
_TOO_MANY = "too_many_requests_error"

ERRORS: dict[int, ErrorSpec] = {
    400: ErrorSpec(
        400, _INVALID, "context_length_exceeded", "messages",
        "Please reduce the length of the messages or completion. Current length is {requested} "
        "while limit is {context}.",
    ),
    401: ErrorSpec(401, _INVALID, "wrong_api_key", "api_key", "Wrong API Key"),
    # 402 and 5xx bodies were not captured; these follow the shape of the captured ones.
    402: ErrorSpec(
        402, "payment_required_error", "payment_required", None,
        "Payment required: your account has no remaining credits.",
    ),
    403: ErrorSpec(403, "permission_denied_error", "permission_denied", None, "Permission denied"),
    404: ErrorSpec(
        404, "not_found_error", "model_not_found", "model",
        "Model {model} does not exist or you do not have access to it.",
    ),
    413: ErrorSpec(413, _INVALID, "request_too_large", None, "Request Entity Too Large"),
    422: ErrorSpec(422, _INVALID, "unprocessable_entity", None, "Unprocessable Entity"),
    429: ErrorSpec(
        429, _TOO_MANY, "request_quota_exceeded", "quota",
        "Requests per minute limit exceeded - too many requests sent.",
    ),
    500: ErrorSpec(500, _SERVER, "internal_server_error", None, "Internal Server Error"),
    503: ErrorSpec(
        503, "service_unavailable_error", "service_unavailable", None,
        "Model {model} is currently over capacity. Please try again later.",
    ),
}  # fmt: skip

CODED_ERRORS: dict[str, ErrorSpec] = {
    "model_not_found": ERRORS[404],
    "wrong_api_key": ERRORS[401],
    "request_quota_exceeded": ERRORS[429],
    "token_quota_exceeded": ErrorSpec(
        429, "too_many_tokens_error", "token_quota_exceeded", "quota",
        "Tokens per minute limit exceeded - too many tokens processed.",
    ),
    "queue_exceeded": ErrorSpec(
        429, _TOO_MANY, "queue_exceeded", "queue",
        "We're experiencing high traffic right now! Please try again soon.",
    ),
    "unknown_url": ErrorSpec(404, "not_found_error", "not_found", None, "Not Found"),
}  # fmt: skip


def duration(value: float) -> str:
    """Cerebras writes durations as plain float seconds, e.g. `11.382867097854614`."""
    return repr(max(value, 0.0))


def rate_headers(snap: RateSnapshot) -> dict[str, str]:
    """The six documented `x-ratelimit-*` headers: requests per day, tokens per minute."""
    return {
        "x-ratelimit-limit-requests-day": str(snap.limit_requests),
        "x-ratelimit-limit-tokens-minute": str(snap.limit_tokens),
        "x-ratelimit-remaining-requests-day": str(snap.remaining_requests),
        "x-ratelimit-remaining-tokens-minute": str(snap.remaining_tokens),
        "x-ratelimit-reset-requests-day": duration(snap.reset_requests),
        "x-ratelimit-reset-tokens-minute": duration(snap.reset_tokens),
    }


def _error_fields(spec: ErrorSpec) -> JSON:
    return {"message": spec.message, "type": spec.type, "param": spec.param, "code": spec.code}


def invalid(message: str, param: str | None) -> ErrorSpec:
    """A refused request: since 2026-04-24 a 400 (was 422) in the shape captured for
    validation failures, `param: "validation_error"`, `code: "wrong_api_format"`."""
    return ErrorSpec(400, _INVALID, "wrong_api_format", "validation_error", message)


def error_body(spec: ErrorSpec) -> JSON:
    """Cerebras errors are top-level: `{"message", "type", "param", "code"}`."""
    return _error_fields(spec)


def stream_error(spec: ErrorSpec) -> JSON:
    """The SDK's `ErrorChunkResponse`; it raises the exception class for `status_code`."""
    return {"error": _error_fields(spec), "status_code": spec.status}


def usage_body(usage: Usage) -> JSON:
    body: JSON = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    if usage.reasoning_tokens:
        body["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return body


def time_info(usage: Usage) -> JSON:
    return {
        "queue_time": usage.queue_time,
        "prompt_time": usage.prompt_time,
        "completion_time": usage.completion_time,
        "total_time": usage.total_time,
        "created": time.time(),
    }


def _chunk(reply: Reply, choices: list[JSON]) -> JSON:
    return {
        "id": reply.completion_id,
        "choices": choices,
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": reply.fingerprint,
        "object": "chat.completion.chunk",
    }


def role_chunk(reply: Reply) -> JSON:
    return _chunk(reply, [{"delta": {"role": "assistant"}, "index": 0}])


def delta_chunk(reply: Reply, delta: JSON) -> JSON:
    return _chunk(reply, [{"delta": delta, "index": 0}])


def reasoning_delta(model: str, text: str) -> JSON:
    return {"reasoning": text}


def tool_call_deltas(call: ToolCall) -> list[JSON]:
    """The SDK's chunk schema wants `type` and `function` on every tool-call delta."""
    return call.deltas(typed=True)


def finish_chunks(
    reply: Reply, usage: Usage, finish_reason: str, include_usage: bool
) -> list[JSON]:
    """The final chunk carries usage + `time_info`; `include_usage` adds a `choices: []` one."""
    finish = _chunk(reply, [{"delta": {}, "finish_reason": finish_reason, "index": 0}])
    finish["usage"] = usage_body(usage)
    finish["time_info"] = time_info(usage)
    if not include_usage:
        return [finish]
    extra = _chunk(reply, [])
    extra["usage"] = finish["usage"]
    extra["time_info"] = finish["time_info"]
    return [finish, extra]


def completion(reply: Reply, message: JSON, usage: Usage, finish_reason: str) -> JSON:
    body = usage_body(usage)
    body["completion_tokens_details"] = {
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
        "reasoning_tokens": usage.reasoning_tokens,
    }
    return {
        "id": reply.completion_id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "system_fingerprint": reply.fingerprint,
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "message": message,
            }
        ],
        "usage": body,
        "time_info": time_info(usage),
    }


def model_entry(model_id: str, created: int) -> JSON:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "Cerebras"}
