"""The Responses side of an answer, as pure functions: the gateway's chunks become Responses
stream events (`EventStream`), whose terminal event carries the response object that a
non-streamed request is answered with; a `GatewayError` mid-stream becomes an `error` event
and `response.failed`. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import GatewayError
from .responses_wire import ResponsesBody, Translated, split_name, unwrap_input
from .schemas import Chunk, Usage

Event = dict[str, Any]

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""Chat finish reasons that leave a response `incomplete`, and the reason it says."""


def head_of(
    response_id: str, model: str, body: ResponsesBody, wanted: Translated
) -> dict[str, Any]:
    """The fields of the response object that echo the request (every one the SDK's
    `Response` and the Open Responses schema require)."""
    reasoning = body.reasoning
    text = body.text
    choice = body.tool_choice if body.tool_choice is not None else "auto"
    return {
        "id": response_id,
        "object": "response",
        "model": model,
        "instructions": body.instructions,
        "tools": wanted.tools,
        "tool_choice": choice,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "top_logprobs": 0,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": None,
        "previous_response_id": None,
        "reasoning": {
            "effort": reasoning.effort if reasoning is not None else None,
            "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None,
        },
        "text": {
            "format": (text.format if text is not None and text.format else {"type": "text"}),
            **({"verbosity": text.verbosity} if text is not None and text.verbosity else {}),
        },
        "truncation": "disabled",
        "store": False,
        "background": False,
        "service_tier": None,
        "metadata": body.metadata or {},
        "user": body.user,
        "safety_identifier": body.safety_identifier,
        "prompt_cache_key": body.prompt_cache_key,
    }


def usage_of(usage: Usage) -> dict[str, Any]:
    """Responses usage for the upstream's counts; the details the SDK requires are zeros (the
    gateway's usage carries no cached or reasoning breakdown)."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def error_code(error: GatewayError) -> str:
    """The Responses error `code` for a failure: rate limits are told apart (Codex waits
    and retries them), every other failure is a `server_error`."""
    return "rate_limit_exceeded" if error.status == 429 else "server_error"


class EventStream:
    """Chunks in, Responses events out: `response.created` and `response.in_progress`, then
    each output item (`reasoning`, `message`, `function_call`, `custom_tool_call`) added,
    filled and done in turn,
    one at a time, then `response.completed` or `response.incomplete` from `finish`, or
    `error` and `response.failed` from `fail`. Every event has its `sequence_number`."""

    def __init__(
        self,
        head: dict[str, Any],
        input_tokens: int,
        *,
        new_id: Callable[[str], str],
        clock: Callable[[], float],
        namespaces: frozenset[str] = frozenset(),
        customs: frozenset[str] = frozenset(),
    ) -> None:
        self._response: dict[str, Any] = {
            **head,
            "created_at": int(clock()),
            "completed_at": None,
            "status": "in_progress",
            "output": [],
            "error": None,
            "incomplete_details": None,
            "usage": None,
        }
        self._input = input_tokens
        self._new_id = new_id
        self._clock = clock
        self._namespaces = namespaces
        self._customs = customs
        self._seq = 0
        self._done: list[dict[str, Any]] = []  # finished output items
        self._open: dict[str, Any] | None = None  # the item being filled
        self._key: object = None  # "reasoning", "message" or ("call", upstream index)
        self._text: list[str] = []  # pieces of the open item's text or arguments
        self._calls: set[int] = set()
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._chars = 0

    def start(self) -> list[Event]:
        """`response.created` and `response.in_progress` (one snapshot: neither changes it)."""
        response = self._snapshot()
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def feed(self, chunk: Chunk) -> list[Event]:
        """The events for one chunk."""
        events: list[Event] = []
        self._chars += len(chunk.content) + len(chunk.reasoning)
        if chunk.reasoning:
            self._enter("reasoning", events)
            events.append(self._piece("response.reasoning_summary_text.delta", chunk.reasoning))
        if chunk.content:
            self._enter("message", events)
            events.append(self._piece("response.output_text.delta", chunk.content))
        for call in chunk.tool_calls:
            if call.index not in self._calls:
                self._calls.add(call.index)
                name = call.function.name if call.function is not None else None
                self._enter(("call", call.index), events, call_id=call.id, name=name)
            elif self._key != ("call", call.index):
                continue  # a piece of a call already done: calls come one after another
            arguments = call.function.arguments if call.function is not None else None
            if not arguments:
                continue
            if self._open is not None and self._open["type"] == "custom_tool_call":
                self._text.append(arguments)  # JSON pieces, not raw text: told at the end
            else:
                events.append(self._piece("response.function_call_arguments.delta", arguments))
        self._finish = chunk.finish_reason or self._finish
        self._usage = chunk.usage or self._usage
        return events

    def finish(self) -> list[Event]:
        """Close the open item; then `response.completed`, or `response.incomplete` when the
        answer was cut (by `max_output_tokens` or a content filter)."""
        reason = INCOMPLETE.get(self._finish or "")
        events: list[Event] = []
        self._close(events, "incomplete" if reason else "completed")
        usage = self._usage
        if usage is None:  # no usage from the upstream: estimates, like the OpenAI API's
            output = (self._chars + 3) // 4
            usage = Usage(self._input, output, self._input + output)
        response = self._snapshot()
        response["usage"] = usage_of(usage)
        if reason:
            response["status"] = "incomplete"
            response["incomplete_details"] = {"reason": reason}
        else:
            response["status"] = "completed"
            response["completed_at"] = int(self._clock())
        name = "response.incomplete" if reason else "response.completed"
        events.append(self._event(name, response=response))
        return events

    def fail(self, error: GatewayError) -> list[Event]:
        """An `error` event and `response.failed` for a failure mid-answer. The `error` event
        also holds the error under `error`, which the OpenAI SDKs raise."""
        code = error_code(error)
        events = [
            self._event(
                "error",
                code=code,
                message=error.message,
                param=None,
                error={"type": error.type, "code": code, "message": error.message, "param": None},
            )
        ]
        if self._open is not None:
            item = self._finished(self._open, "incomplete")
            self._done.append(item)
            self._open = None
        response = self._snapshot()
        response["status"] = "failed"
        response["error"] = {"code": code, "message": error.message}
        events.append(self._event("response.failed", response=response))
        return events

    def _snapshot(self) -> dict[str, Any]:
        return {**self._response, "output": list(self._done)}

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _place(self) -> dict[str, Any]:
        """Where the open item is: its id and output index."""
        assert self._open is not None
        return {"item_id": self._open["id"], "output_index": len(self._done)}

    def _piece(self, kind: str, delta: str) -> Event:
        # The one event of every chunk: built whole, with no merging of keyword arguments.
        self._text.append(delta)
        assert self._open is not None
        seq = self._seq
        self._seq = seq + 1
        event = {
            "type": kind,
            "sequence_number": seq,
            "item_id": self._open["id"],
            "output_index": len(self._done),
        }
        if kind == "response.output_text.delta":
            event["content_index"] = 0
            event["delta"] = delta
            event["logprobs"] = []
        elif kind == "response.reasoning_summary_text.delta":
            event["summary_index"] = 0
            event["delta"] = delta
        else:
            event["delta"] = delta
        return event

    def _enter(
        self, key: object, events: list[Event], call_id: str | None = None, name: str | None = None
    ) -> None:
        if self._key == key:
            return
        self._close(events, "completed")
        self._key = key
        if key == "reasoning":
            item: dict[str, Any] = {"type": "reasoning", "id": self._new_id("rs"), "summary": []}
        elif key == "message":
            item = {
                "type": "message",
                "id": self._new_id("msg"),
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
        elif name in self._customs:
            item = {
                "type": "custom_tool_call",
                "id": self._new_id("ctc"),
                "call_id": call_id or self._new_id("call"),
                "name": name,
                "input": "",
            }
        else:
            namespace, name = split_name(name or "", self._namespaces)
            item = {
                "type": "function_call",
                "id": self._new_id("fc"),
                "call_id": call_id or self._new_id("call"),
                "name": name,
                "arguments": "",
                "status": "in_progress",
                **({"namespace": namespace} if namespace is not None else {}),
            }
        self._open = item
        index = len(self._done)
        events.append(self._event("response.output_item.added", output_index=index, item=item))
        where = self._place()
        if key == "reasoning":
            part: dict[str, Any] = {"type": "summary_text", "text": ""}
            events.append(
                self._event(
                    "response.reasoning_summary_part.added", **where, summary_index=0, part=part
                )
            )
        elif key == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(
                self._event("response.content_part.added", **where, content_index=0, part=part)
            )

    def _close(self, events: list[Event], status: str) -> None:
        item = self._open
        if item is None:
            return
        text = "".join(self._text)
        where = self._place()
        if item["type"] == "reasoning":
            part: dict[str, Any] = {"type": "summary_text", "text": text}
            events.append(
                self._event(
                    "response.reasoning_summary_text.done", **where, summary_index=0, text=text
                )
            )
            events.append(
                self._event(
                    "response.reasoning_summary_part.done", **where, summary_index=0, part=part
                )
            )
        elif item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            events.append(
                self._event(
                    "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
                )
            )
            events.append(
                self._event("response.content_part.done", **where, content_index=0, part=part)
            )
        elif item["type"] == "custom_tool_call":
            raw = unwrap_input(text)
            if raw:
                events.append(
                    self._event("response.custom_tool_call_input.delta", **where, delta=raw)
                )
            events.append(self._event("response.custom_tool_call_input.done", **where, input=raw))
        else:
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    **where,
                    name=item["name"],
                    arguments=text,
                )
            )
        done = self._finished(item, status)
        events.append(
            self._event("response.output_item.done", output_index=len(self._done), item=done)
        )
        self._done.append(done)
        self._open = None
        self._key = None

    def _finished(self, item: dict[str, Any], status: str) -> dict[str, Any]:
        text = "".join(self._text)
        self._text = []
        if item["type"] == "reasoning":
            return {**item, "summary": [{"type": "summary_text", "text": text}]}
        if item["type"] == "message":
            part: dict[str, Any] = {
                "type": "output_text",
                "text": text,
                "annotations": [],
                "logprobs": [],
            }
            return {**item, "status": status, "content": [part]}
        if item["type"] == "custom_tool_call":
            return {**item, "input": unwrap_input(text)}
        return {**item, "arguments": text, "status": status}
