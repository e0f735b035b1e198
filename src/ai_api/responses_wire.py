"""OpenAI Responses requests in the gateway's Chat Completions terms, as pure functions: the
typed body of `POST /v1/responses`, and `translate`, which makes of it the gateway's messages,
completion cap and OpenAI options (the `input` items: `ai_api.responses_input`). No I/O here;
the answer's side is `ai_api.responses_events`.

The gateway keeps no responses: `store: true`, `previous_response_id`, `conversation`,
`background` and `item_reference` items are refused with a 400 (the SDK sends no `store` unless
told, and Codex sends `store: false` with the whole history).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from .errors import InvalidRequest
from .responses_input import to_messages
from .schemas import Message


class ResponsesReasoning(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`reasoning`: the effort is sent where a provider takes it; a summary asks to see it."""

    effort: str | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesText(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`text`: the output format (`text`, `json_object`, `json_schema`); `verbosity` is
    accepted and not sent (the Chat upstreams have no such field)."""

    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesStreamOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`stream_options`: accepted; the gateway does not obfuscate."""

    include_obfuscation: bool | None = None


class ResponsesBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /v1/responses`: the fields the facade knows; others are a 400."""

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    reasoning: ResponsesReasoning | None = None
    text: ResponsesText | None = None
    stream: bool = False
    stream_options: ResponsesStreamOptions | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    conversation: str | dict[str, Any] | None = None
    background: bool | None = None
    include: list[str] | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    top_logprobs: int | None = None
    max_tool_calls: int | None = None
    client_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Translated:
    """A Responses request as the gateway asks it."""

    messages: tuple[Message, ...]
    max_tokens: int | None
    options: dict[str, Any]
    tools: list[dict[str, Any]]
    """The tools as the response object echoes them."""
    namespaces: frozenset[str] = frozenset()
    """The names of the request's `namespace` tools, whose calls come back flattened."""
    customs: frozenset[str] = frozenset()
    """The names of the request's `custom` tools, whose calls come back as JSON arguments."""


def translate(body: ResponsesBody) -> Translated:
    """The gateway's request for `body`; `InvalidRequest` naming what cannot be served."""
    _refuse_unsupported(body)
    if body.max_output_tokens is not None and body.max_output_tokens < 1:
        raise InvalidRequest("`max_output_tokens` must be at least 1.", param="max_output_tokens")
    options: dict[str, Any] = {}
    for name, value, high in (("temperature", body.temperature, 2.0), ("top_p", body.top_p, 1.0)):
        if value is not None:
            if not 0.0 <= value <= high:
                raise InvalidRequest(f"`{name}` must be between 0 and {high:g}.", param=name)
            options[name] = value
    tools, echoed = chat_tools(body.tools or [])
    options.update(_tool_options(tools, body.tool_choice))
    if body.parallel_tool_calls is not None and tools:
        options["parallel_tool_calls"] = body.parallel_tool_calls
    if body.user is not None:
        options["user"] = body.user
    if body.reasoning is not None:
        if body.reasoning.effort is not None:
            options["reasoning_effort"] = effort_of(body.reasoning.effort)
        if body.reasoning.summary or body.reasoning.generate_summary:
            options["reasoning_format"] = "parsed"
    response_format = format_of(body.text.format if body.text is not None else None)
    if response_format is not None:
        options["response_format"] = response_format
    return Translated(
        to_messages(body.instructions, body.input),
        body.max_output_tokens,
        options,
        echoed,
        frozenset(t["name"] for t in echoed if t.get("type") == "namespace"),
        frozenset(t["name"] for t in echoed if t.get("type") == "custom"),
    )


def _refuse_unsupported(body: ResponsesBody) -> None:
    """The fields that need responses kept on the server, which the gateway does not do, and
    the others it cannot honour."""
    if body.store:
        raise InvalidRequest(
            "`store: true` is not supported: the gateway keeps no responses; send"
            " `store: false` (or no `store`) and the whole conversation in `input`.",
            param="store",
        )
    for name in ("previous_response_id", "conversation"):
        if getattr(body, name) is not None:
            raise InvalidRequest(
                f"`{name}` is not supported: the gateway keeps no responses; send the whole"
                " conversation in `input`.",
                param=name,
            )
    if body.background:
        raise InvalidRequest(
            "`background` is not supported: the gateway keeps no responses to poll.",
            param="background",
        )
    if body.truncation == "auto":
        raise InvalidRequest(
            "`truncation: auto` is not supported: the gateway does not drop input to fit.",
            param="truncation",
        )
    if body.top_logprobs:
        raise InvalidRequest("`top_logprobs` is not supported by ai-api.", param="top_logprobs")
    if body.max_tool_calls is not None:
        raise InvalidRequest(
            "`max_tool_calls` is not supported: the gateway cannot bound the calls a model makes.",
            param="max_tool_calls",
        )
    if body.include and "message.output_text.logprobs" in body.include:
        raise InvalidRequest("Log-probabilities are not supported by ai-api.", param="include")


EFFORTS = {
    "none": "low",
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
    "max": "high",
}
"""Responses efforts in the Chat upstreams' vocabulary (low, medium, high)."""


def effort_of(effort: str) -> str:
    """The `reasoning_effort` sent upstream for a Responses `reasoning.effort`."""
    try:
        return EFFORTS[effort]
    except KeyError:
        raise InvalidRequest(
            f"`reasoning.effort` must be one of {', '.join(EFFORTS)}.", param="reasoning.effort"
        ) from None


def format_of(text_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Chat `response_format` for a Responses `text.format` (None: plain text)."""
    if text_format is None or text_format.get("type") == "text":
        return None
    kind = text_format.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(text_format.get("name"), str) or not isinstance(
            text_format.get("schema"), dict
        ):
            raise InvalidRequest(
                "`text.format` of type json_schema needs a `name` and a `schema`.",
                param="text.format",
            )
        schema = {
            k: text_format[k]
            for k in ("name", "schema", "description", "strict")
            if k in text_format
        }
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequest(
        f"`text.format` type {kind!r} is not supported (text, json_object, json_schema).",
        param="text.format.type",
    )


SEPARATOR = "__"
"""Between a namespace's name and its tool's in the flattened Chat function name."""


def chat_tools(tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Chat tools for Responses `tools`, and the tools as the response echoes them. The
    function tools of a `namespace` are flattened to `<namespace>__<name>`."""
    out: list[dict[str, Any]] = []
    echoed: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if tool.get("type") == "custom":
            out.append(_custom(f"tools[{i}]", tool))
            echoed.append(tool)
            continue
        if tool.get("type") != "namespace":
            out.append(_function(f"tools[{i}]", tool))
            echoed.append(_echo(out[-1]))
            continue
        namespace = tool.get("name")
        inner = tool.get("tools")
        if not isinstance(namespace, str) or not namespace or not isinstance(inner, list):
            raise InvalidRequest(
                f"`tools[{i}]`: a namespace needs a `name` and `tools`.", param=f"tools[{i}]"
            )
        for j, function in enumerate(inner):
            chat = _function(
                f"tools[{i}].tools[{j}]", function if isinstance(function, dict) else {}
            )
            chat["function"]["name"] = f"{namespace}{SEPARATOR}{chat['function']['name']}"
            out.append(chat)
        echoed.append(tool)
    return out, echoed


def _function(where: str, tool: dict[str, Any]) -> dict[str, Any]:
    """A Responses function tool as a Chat tool."""
    kind = tool.get("type")
    if kind != "function":
        raise InvalidRequest(
            f"`{where}` is of type {kind!r}; only `function` and `custom` tools (and"
            " `namespace` tools of functions) are supported: the upstreams run no hosted tools.",
            param=f"{where}.type",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"`{where}` needs a `name`.", param=f"{where}.name")
    extra = set(tool) - {"type", "name", "parameters", "description", "strict", "defer_loading"}
    if extra:
        field = sorted(extra)[0]
        raise InvalidRequest(f"`{where}.{field}` is not supported.", param=f"{where}.{field}")
    function: dict[str, Any] = {"name": name}
    parameters = tool.get("parameters")
    function["parameters"] = (
        parameters if parameters is not None else {"type": "object", "properties": {}}
    )
    if tool.get("description") is not None:
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


CUSTOM_INPUT = "input"
"""The one string parameter of the function a `custom` tool is sent upstream as."""


def _custom(where: str, tool: dict[str, Any]) -> dict[str, Any]:
    """A `custom` (freeform) tool as a Chat function of one string parameter, `input`; its
    grammar, if any, told in the description (no Chat upstream enforces one)."""
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"`{where}` needs a `name`.", param=f"{where}.name")
    extra = set(tool) - {"type", "name", "description", "format", "defer_loading"}
    if extra:
        field = sorted(extra)[0]
        raise InvalidRequest(f"`{where}.{field}` is not supported.", param=f"{where}.{field}")
    description = str(tool.get("description") or "")
    form = tool.get("format")
    if isinstance(form, dict) and form.get("type") == "grammar":
        description += (
            f"\n\nThe `{CUSTOM_INPUT}` is raw text in this {form.get('syntax', '')} grammar:"
            f"\n{form.get('definition', '')}"
        )
    parameters = {
        "type": "object",
        "properties": {CUSTOM_INPUT: {"type": "string", "description": "The raw input."}},
        "required": [CUSTOM_INPUT],
    }
    function = {"name": name, "parameters": parameters, "description": description.strip()}
    return {"type": "function", "function": function}


def _echo(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    return {
        "type": "function",
        "name": function["name"],
        "description": function.get("description"),
        "parameters": function["parameters"],
        "strict": False,
    }


def unwrap_input(arguments: str) -> str:
    """A `custom` tool call's raw input, from the JSON arguments of its Chat function (the
    arguments themselves when they are not that JSON)."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(CUSTOM_INPUT), str):
        return str(value[CUSTOM_INPUT])
    return arguments


def split_name(name: str, namespaces: frozenset[str]) -> tuple[str | None, str]:
    """The namespace and the name of a flattened Chat function name (None: no namespace)."""
    namespace, separator, rest = name.partition(SEPARATOR)
    if separator and rest and namespace in namespaces:
        return namespace, rest
    return None, name


def _tool_options(tools: list[dict[str, Any]], choice: object) -> dict[str, Any]:
    """`tools` and `tool_choice` in Chat's words; an `allowed_tools` choice keeps only the
    tools it names."""
    if choice is None or (choice == "none" and not tools):
        return {"tools": tools} if tools else {}
    if not tools:
        raise InvalidRequest("`tool_choice` needs `tools`.", param="tool_choice")
    if choice in ("none", "auto", "required"):
        return {"tools": tools, "tool_choice": choice}
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        name = choice.get("name")
        if not isinstance(name, str) or name not in {t["function"]["name"] for t in tools}:
            raise InvalidRequest(
                f"`tool_choice` names {name!r}, which is not in `tools`.", param="tool_choice"
            )
        return {"tools": tools, "tool_choice": {"type": "function", "function": {"name": name}}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        wanted = choice.get("tools")
        mode = choice.get("mode", "auto")
        if not isinstance(wanted, list) or mode not in ("auto", "required"):
            raise InvalidRequest(
                "`tool_choice` allowed_tools needs `tools` and a mode of auto or required.",
                param="tool_choice",
            )
        names = {
            t["name"] for t in wanted if isinstance(t, dict) and isinstance(t.get("name"), str)
        }
        kept = [t for t in tools if t["function"]["name"] in names]
        if not kept:
            raise InvalidRequest(
                "`tool_choice` allowed_tools names none of `tools`.", param="tool_choice"
            )
        return {"tools": kept, "tool_choice": mode}
    raise InvalidRequest(
        f"`tool_choice` {choice!r} is not supported (none, auto, required, a function,"
        " allowed_tools).",
        param="tool_choice",
    )
