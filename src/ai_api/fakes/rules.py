"""Request checks each provider documents, as data: what a fake refuses with a 400.

Only what reference/providers.md states is checked (Groq A.1: `n` only 1, no `logprobs`,
`logit_bias`, `top_logprobs` or `messages[].name`, `temperature` 0-2, at most 4 `stop`,
`reasoning_format` xor `include_reasoning`; Cerebras A.2: `temperature` 0-1.5, `top_logprobs`
0-20), and, for tests, a provider that takes no assistant prefill (`prefill=False`). Each flavor
renders a `Violation` in its own error shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .tools import named_choice, offered_functions


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a request is refused: the offending parameter and a sentence saying so."""

    param: str | None
    message: str


@dataclass(frozen=True, slots=True)
class RequestRules:
    """What one provider refuses in a chat request.

    `unsupported` fields are refused whenever set (not null, false or empty);
    `reasoning_formats` lists the accepted `reasoning_format` values (empty: the field is
    ignored); `include_reasoning` accepts that switch, exclusive with `reasoning_format`;
    `prefill=False` refuses a conversation that ends with an assistant message (a partial
    answer to continue) instead of continuing it.
    """

    temperature_max: float = 2.0
    max_stop: int | None = None
    only_one_choice: bool = False
    unsupported: tuple[str, ...] = ()
    top_logprobs_max: int | None = None
    message_names: bool = True
    reasoning_formats: tuple[str, ...] = ()
    include_reasoning: bool = False
    prefill: bool = True


def _is_set(value: Any) -> bool:
    return not (value is None or value is False or value == {})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range(body: Mapping[str, Any], name: str, low: float, high: float) -> Violation | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_number(value):
        return Violation(name, f"`{name}` must be a number.")
    if not low <= value <= high:
        return Violation(name, f"`{name}` must be between {low:g} and {high:g}, got {value}.")
    return None


def _choices(body: Mapping[str, Any], rules: RequestRules) -> Violation | None:
    n = body.get("n")
    if rules.only_one_choice and n is not None and n != 1:
        return Violation("n", "`n` must be 1: only one choice per request is supported.")
    for name in rules.unsupported:
        if _is_set(body.get(name)):
            return Violation(name, f"`{name}` is not supported with this model")
    stop = body.get("stop")
    if rules.max_stop is not None and isinstance(stop, list) and len(stop) > rules.max_stop:
        return Violation("stop", f"`stop` takes at most {rules.max_stop} sequences.")
    return None


def _reasoning(body: Mapping[str, Any], rules: RequestRules) -> Violation | None:
    if not rules.reasoning_formats:
        return None
    form = body.get("reasoning_format")
    if form is not None and form not in rules.reasoning_formats:
        allowed = ", ".join(rules.reasoning_formats)
        return Violation("reasoning_format", f"`reasoning_format` must be one of: {allowed}.")
    if rules.include_reasoning and form is not None and body.get("include_reasoning") is not None:
        return Violation(
            "reasoning_format",
            "`reasoning_format` and `include_reasoning` are mutually exclusive; set only one.",
        )
    return None


def _messages(body: Mapping[str, Any], rules: RequestRules) -> Violation | None:
    if rules.message_names:
        return None
    for index, message in enumerate(body.get("messages") or ()):
        if isinstance(message, dict) and message.get("name") is not None:
            return Violation(f"messages.{index}.name", "`name` in messages is not supported")
    return None


def prefill_of(body: Mapping[str, Any]) -> str | None:
    """The partial answer a request asks to continue: the text of a final assistant message."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if not isinstance(last, dict) or last.get("role") != "assistant" or last.get("tool_calls"):
        return None
    content = last.get("content")
    return content if isinstance(content, str) else None


def _prefill(body: Mapping[str, Any], rules: RequestRules) -> Violation | None:
    if rules.prefill or prefill_of(body) is None:
        return None
    index = len(body["messages"]) - 1
    return Violation(
        f"messages.{index}", "assistant message prefill is not supported by this model"
    )


def _tool_choice(body: Mapping[str, Any]) -> Violation | None:
    wanted = named_choice(body)
    if wanted is not None and wanted not in {f["name"] for f in offered_functions(body)}:
        return Violation(
            "tool_choice", f"`tool_choice` names the function `{wanted}`, which is not in `tools`."
        )
    return None


def violation(body: Mapping[str, Any], rules: RequestRules) -> Violation | None:
    """The first rule `body` breaks, or None when the provider would accept it."""
    found = _range(body, "temperature", 0.0, rules.temperature_max)
    if found is None and rules.top_logprobs_max is not None:
        found = _range(body, "top_logprobs", 0, rules.top_logprobs_max)
    return (
        found
        or _choices(body, rules)
        or _reasoning(body, rules)
        or _messages(body, rules)
        or _prefill(body, rules)
        or _tool_choice(body)
    )
