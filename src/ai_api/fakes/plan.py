"""What the fake answers to one valid chat request: text, shown reasoning, or a tool call.

A request with `response_format` gets JSON as its text: an instance of the `json_schema` it
gives (`schema_values`), or for `json_object` an object holding the usual answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .answer import answer_tokens, fixed_tokens, prompt_tokens, thought_tokens
from .rules import RequestRules, prefill_of
from .schema_values import example
from .tools import tool_call
from .wire import JSON, ToolCall, Usage

# Model ids that reason before answering (Groq gpt-oss and qwen3, Cerebras gpt-oss).
REASONING_MARKERS = ("gpt-oss", "qwen3")
# Characters per token of a JSON answer (so a stream of one has several chunks).
JSON_TOKEN_CHARS = 8
# Words of the usual answer a `json_object` answer holds.
JSON_ANSWER_WORDS = 16


@dataclass(frozen=True, slots=True)
class ChatPlan:
    """The answer to one chat request: its reasoning, content tokens or tool call, and usage."""

    tokens: list[str]
    finish_reason: str
    prompt_tokens: int
    stream: bool
    include_usage: bool
    reasoning: tuple[str, ...] = ()
    tool_call: ToolCall | None = None

    @property
    def usage(self) -> Usage:
        completion = len(self.reasoning) + len(self.tokens)
        if self.tool_call is not None:
            completion += self.tool_call.tokens
        return Usage(self.prompt_tokens, completion, len(self.reasoning))

    @property
    def chunk_count(self) -> int:
        """How many body chunks a stream of this answer has (role and finish chunks aside)."""
        calls = 1 + len(self.tool_call.pieces()) if self.tool_call is not None else 0
        return len(self.reasoning) + calls + len(self.tokens)

    def message(self) -> JSON:
        """The assistant message of a non-streaming answer."""
        message: JSON = {"role": "assistant", "content": "".join(self.tokens)}
        if self.reasoning:
            message["reasoning"] = "".join(self.reasoning)
        if self.tool_call is not None:
            message["content"] = None
            message["tool_calls"] = [self.tool_call.full()]
        return message


def shows_reasoning(body: Mapping[str, Any], rules: RequestRules) -> bool:
    """Whether the request asks a reasoning model to show its reasoning in a field.

    `reasoning_format: "parsed"` does (Groq, Cerebras), as does Groq's `include_reasoning`;
    `hidden`, `raw` and the rest leave it out.
    """
    model = body.get("model")
    if not isinstance(model, str) or not any(m in model for m in REASONING_MARKERS):
        return False
    form = body.get("reasoning_format")
    if rules.reasoning_formats and form is not None:
        return bool(form == "parsed")
    return rules.include_reasoning and body.get("include_reasoning") is True


def _cap(body: Mapping[str, Any]) -> int | None:
    cap = body.get("max_completion_tokens")
    if cap is None:
        cap = body.get("max_tokens")
    if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
        return cap
    return None


def make_plan(
    body: Mapping[str, Any],
    label: str,
    rules: RequestRules,
    count: int,
    call_id: str,
    text: str | None = None,
) -> ChatPlan:
    """The answer to a checked request; `count` content tokens unless capped or calling a tool.
    With `text`, the answer is that text (its words) whatever the request, not made from it.

    The completion-token cap covers reasoning and content together, as Cerebras documents.
    """
    messages = body["messages"]
    reasoning = thought_tokens() if shows_reasoning(body, rules) else []
    call = tool_call(body, call_id)
    finish = "tool_calls" if call is not None else "stop"
    cap = _cap(body)
    if text is not None:
        count = len(text.split())
    pieces = None if text is not None or call is not None else structured_tokens(body, label)
    if pieces is not None:
        count = len(pieces)
    if call is not None:
        count = 0
    elif cap is not None and cap < len(reasoning) + count:
        reasoning = reasoning[:cap]
        count, finish = cap - len(reasoning), "length"
    options = body.get("stream_options")
    prefill = prefill_of(body)
    asked = messages if prefill is None else messages[:-1]
    if pieces is not None:
        full = pieces[:count]
    elif text is not None:
        full = fixed_tokens(text)[:count]
    else:
        full = answer_tokens(label, body["model"], asked, count)
    if prefill is None:
        tokens = full
    else:
        tokens = continued(full, prefill, echo=messages[-1].get("prefix") is True)
    return ChatPlan(
        tokens=tokens,
        finish_reason=finish,
        prompt_tokens=prompt_tokens(messages),
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        reasoning=tuple(reasoning),
        tool_call=call,
    )


def structured_tokens(body: Mapping[str, Any], label: str) -> list[str] | None:
    """The answer as JSON tokens when `response_format` asks for JSON, else None."""
    form = body.get("response_format")
    kind = form.get("type") if isinstance(form, dict) else None
    if kind == "json_schema":
        spec = form.get("json_schema") if isinstance(form, dict) else None
        value = example(spec.get("schema") if isinstance(spec, dict) else None)
    elif kind == "json_object":
        words = answer_tokens(label, str(body.get("model")), body["messages"], JSON_ANSWER_WORDS)
        value = {"answer": "".join(words)}
    else:
        return None
    text = msgspec.json.encode(value).decode()
    return [text[i : i + JSON_TOKEN_CHARS] for i in range(0, len(text), JSON_TOKEN_CHARS)]


def continued(tokens: list[str], prefill: str, *, echo: bool = False) -> list[str]:
    """The tokens that continue `prefill`, a partial answer, as a model continues a final
    assistant message: the rest of the answer `tokens` after it when it begins that answer,
    else the answer past as many words as it has. `echo` repeats it first (as Mistral's
    `prefix: true` does)."""
    text = "".join(tokens)
    if text.startswith(prefill):
        rest: list[str] = []
        at = 0
        for token in tokens:
            end = at + len(token)
            if end > len(prefill):
                rest.append(token[max(0, len(prefill) - at) :])
            at = end
    else:
        rest = tokens[len(prefill.split()) :]
    return [prefill, *rest] if echo and prefill else rest
