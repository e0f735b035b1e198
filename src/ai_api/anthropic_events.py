"""Anthropic's side of an answer, as pure functions: the gateway's chunks become Messages
stream events (`EventStream`), which add up to the non-streamed message (`fold`); a
`GatewayError` becomes Anthropic's error status and shape (`error_of`). No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from .errors import GatewayError, UpstreamError
from .schemas import Chunk, Usage

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason_of(finish_reason: str | None, tool_used: bool) -> str:
    """Anthropic's `stop_reason` for an OpenAI `finish_reason`; `tool_use` only when a
    `tool_use` block was answered. Chat upstreams do not say which stop sequence matched,
    so a stop is always `end_turn`."""
    reason = STOP_REASONS.get(finish_reason or "stop", "end_turn")
    if reason == "tool_use" and not tool_used:
        return "end_turn"
    if tool_used and reason == "end_turn":
        return "tool_use"
    return reason


Event = dict[str, Any]


class EventStream:
    """Chunks in, Anthropic stream events out: `message_start`, then each content block
    (`thinking`, `text`, `tool_use`) started, filled and stopped in turn, then
    `message_delta` and `message_stop` from `finish`."""

    def __init__(
        self,
        message_id: str,
        model: str,
        input_tokens: int,
        *,
        show_thinking: bool,
        tool_id: Callable[[], str],
    ) -> None:
        self._id, self._model, self._input = message_id, model, input_tokens
        self._show = show_thinking
        self._tool_id = tool_id
        self._open: object = None  # "thinking", "text" or ("tool", upstream index)
        self._count = 0  # blocks started
        self._tools: dict[int, int] = {}  # upstream tool-call index -> block index
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._chars = 0

    def start(self) -> list[Event]:
        """The `message_start` event."""
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input, "output_tokens": 0},
        }
        return [{"type": "message_start", "message": message}]

    def feed(self, chunk: Chunk) -> list[Event]:
        """The events for one chunk."""
        events: list[Event] = []
        self._chars += len(chunk.content) + len(chunk.reasoning)
        if chunk.reasoning and self._show:
            self._enter("thinking", {"type": "thinking", "thinking": "", "signature": ""}, events)
            events.append(self._delta({"type": "thinking_delta", "thinking": chunk.reasoning}))
        if chunk.content:
            self._enter("text", {"type": "text", "text": ""}, events)
            events.append(self._delta({"type": "text_delta", "text": chunk.content}))
        for call in chunk.tool_calls:
            index = self._tools.get(call.index)
            if index is None:
                name = call.function.name if call.function is not None else None
                start = {
                    "type": "tool_use",
                    "id": call.id or self._tool_id(),
                    "name": name or "",
                    "input": {},
                }
                self._enter(("tool", call.index), start, events)
                index = self._tools[call.index] = self._count - 1
            arguments = call.function.arguments if call.function is not None else None
            if arguments:
                piece = {"type": "input_json_delta", "partial_json": arguments}
                events.append({"type": "content_block_delta", "index": index, "delta": piece})
        self._finish = chunk.finish_reason or self._finish
        self._usage = chunk.usage or self._usage
        return events

    def finish(self) -> list[Event]:
        """Stop the open block; then `message_delta` (stop reason, cumulative usage) and
        `message_stop`."""
        events: list[Event] = []
        self._close(events)
        usage = self._usage
        if usage is not None:
            counts = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
        else:  # no usage from the upstream: estimates, like the OpenAI API's
            counts = {"input_tokens": self._input, "output_tokens": (self._chars + 3) // 4}
        delta = {
            "stop_reason": stop_reason_of(self._finish, bool(self._tools)),
            "stop_sequence": None,
        }
        events.append({"type": "message_delta", "delta": delta, "usage": counts})
        events.append({"type": "message_stop"})
        return events

    def _enter(self, kind: object, block: dict[str, Any], events: list[Event]) -> None:
        if self._open == kind:
            return
        self._close(events)
        events.append({"type": "content_block_start", "index": self._count, "content_block": block})
        self._open = kind
        self._count += 1

    def _close(self, events: list[Event]) -> None:
        if self._open is not None:
            events.append({"type": "content_block_stop", "index": self._count - 1})
            self._open = None

    def _delta(self, delta: dict[str, Any]) -> Event:
        return {"type": "content_block_delta", "index": self._count - 1, "delta": delta}


class BadToolInput(ValueError):
    """A tool call's arguments are not a JSON object."""


def fold(events: Iterable[Event]) -> dict[str, Any]:
    """The message that a complete stream of events adds up to (the non-streamed answer);
    `BadToolInput` when a tool call's arguments are not a JSON object."""
    message: dict[str, Any] = {}
    pieces: dict[int, list[str]] = {}
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = {**event["message"], "content": [], "usage": dict(event["message"]["usage"])}
        elif kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                pieces.setdefault(event["index"], []).append(delta["partial_json"])
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"].update(event["usage"])
    for index, parts in pieces.items():
        try:
            value = json.loads("".join(parts))
        except ValueError as exc:
            raise BadToolInput(f"the arguments of a tool call are not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise BadToolInput("the arguments of a tool call are not a JSON object")
        message["content"][index]["input"] = value
    return message


_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


TOO_LONG = "prompt is too long"
"""How Anthropic's message for a prompt over the model's window begins: Claude Code compacts
the conversation and tries again when it reads it (any other wording is a failure to it)."""


def error_of(error: GatewayError) -> tuple[int, dict[str, Any]]:
    """The status and Anthropic error body for `error`: an overloaded provider (503) is
    Anthropic's 529 `overloaded_error`; a prompt over the window (the provider's
    `context_length_exceeded`, as `ai_api.verdicts` classifies it) a 400 whose message begins
    `prompt is too long`; other statuses keep theirs."""
    status, message = error.status, error.message
    if isinstance(error, UpstreamError) and status == 503:
        status = 529
    if isinstance(error, UpstreamError) and error.code == "context_length_exceeded":
        status, message = 400, f"{TOO_LONG}: {message}"
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return status, {"type": "error", "error": {"type": kind, "message": message}}


PING = {"type": "ping"}
"""The keep-alive event of a stream whose upstream is silent (its reasoning hidden...)."""


def speaks_anthropic(path: str, version: str | None) -> bool:
    """Whether a request to `path` with this `anthropic-version` header (None: without) is
    answered in Anthropic's shapes: `/v1/messages...` always, `/v1/models` with the header."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return True
    return version is not None and path == "/v1/models"


EPOCH = "1970-01-01T00:00:00Z"
"""`created_at` of every model: the gateway does not know when a model came out."""


def model_page(
    names: list[str], *, limit: int, after_id: str | None, before_id: str | None
) -> dict[str, Any]:
    """A page of Anthropic's model list over `names` (in the gateway's order), by the
    `after_id` / `before_id` cursors; `ValueError` for a cursor that is no model name."""
    if before_id is not None:
        end = names.index(before_id)
        start = max(0, end - limit)
        more = start > 0
    else:
        start = names.index(after_id) + 1 if after_id is not None else 0
        end = min(len(names), start + limit)
        more = end < len(names)
    page = names[start:end]
    return {
        "data": [
            {"type": "model", "id": name, "display_name": name, "created_at": EPOCH}
            for name in page
        ],
        "has_more": more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
