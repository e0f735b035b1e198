"""Anthropic Messages requests in the gateway's OpenAI-shaped terms, as pure functions: the
typed body of `POST /v1/messages` (and of `count_tokens`), and `translate`, which makes of it
the gateway's messages, completion cap and OpenAI options. No I/O here; the answer's side is
`ai_api.anthropic_events`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from .errors import InvalidRequest
from .schemas import Message


class TextBlock(
    msgspec.Struct, tag="text", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """A text block; `cache_control` and `citations` are accepted and not sent upstream."""

    text: str
    cache_control: dict[str, Any] | None = None
    citations: list[Any] | None = None


class Base64Source(
    msgspec.Struct, tag="base64", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """An image sent inline."""

    media_type: str
    data: str


class URLSource(
    msgspec.Struct, tag="url", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """An image by URL."""

    url: str


class ImageBlock(
    msgspec.Struct, tag="image", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """An image, sent upstream as an OpenAI `image_url` part."""

    source: Base64Source | URLSource
    cache_control: dict[str, Any] | None = None


class ToolUseBlock(
    msgspec.Struct, tag="tool_use", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """A tool call the assistant made."""

    id: str
    name: str
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None
    caller: dict[str, Any] | None = None
    """Who made the call (the model, or code a server tool ran): ignored, the call is the same."""


class ToolResultBlock(
    msgspec.Struct, tag="tool_result", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """What a tool call returned."""

    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: bool = False
    cache_control: dict[str, Any] | None = None


class ThinkingBlock(
    msgspec.Struct, tag="thinking", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """Reasoning of an earlier answer: accepted, not sent upstream."""

    thinking: str
    signature: str = ""


class RedactedThinkingBlock(
    msgspec.Struct,
    tag="redacted_thinking",
    tag_field="type",
    frozen=True,
    forbid_unknown_fields=True,
):
    """Opaque reasoning of an earlier answer: accepted, not sent upstream."""

    data: str


Block = (
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock
)


class JSONSchemaFormat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Structured output: the answer is JSON fitting `schema`. `type` is a plain field, not a
    tag: msgspec takes a lone tagged struct without its tag, which Anthropic requires."""

    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`output_config`: how much effort to spend, and the answer's format."""

    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JSONSchemaFormat | None = None


class InputMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One turn of `messages` (a `system` turn too, as Claude Code sends); `output_config`
    on a turn (the per-turn-control beta) sets the answer's from that turn on."""

    role: Literal["user", "assistant", "system"]
    content: str | list[Block]
    output_config: OutputConfig | None = None


class Tool(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A client tool; server tools (a versioned `type`) are refused in `translate`.

    `strict` is sent upstream (the function's `strict`: the arguments must fit the schema).
    A tool with `defer_loading: true` is not sent at all: the model is not shown it until
    Anthropic's tool search loads it (`tool_reference` blocks, a 400 here), so offering it
    would let the model call what it may not. Accepted and not sent, because none changes
    what a call may be: `cache_control` (prompt caching), `eager_input_streaming` (how
    finely arguments stream), `input_examples` (examples for the model, no constraint on the
    call) and `allowed_callers` (which of Anthropic's server tools may call it; there are
    none here).
    """

    name: str
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None
    cache_control: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: bool | None = None
    eager_input_streaming: bool | None = None
    input_examples: list[Any] | None = None
    allowed_callers: list[Any] | None = None


class ChoiceAuto(
    msgspec.Struct, tag="auto", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """`tool_choice` auto."""

    disable_parallel_tool_use: bool | None = None


class ChoiceAny(
    msgspec.Struct, tag="any", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """`tool_choice` any: some tool must be called."""

    disable_parallel_tool_use: bool | None = None


class ChoiceTool(
    msgspec.Struct, tag="tool", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """`tool_choice` naming the tool to call."""

    name: str
    disable_parallel_tool_use: bool | None = None


class ChoiceNone(
    msgspec.Struct, tag="none", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """`tool_choice` none."""


class ThinkingEnabled(
    msgspec.Struct, tag="enabled", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """Manual thinking with a token budget."""

    budget_tokens: int
    display: Literal["summarized", "omitted"] | None = None


class ThinkingAdaptive(
    msgspec.Struct, tag="adaptive", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """Thinking as the model sees fit."""

    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(
    msgspec.Struct, tag="disabled", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """No thinking."""


Thinking = ThinkingEnabled | ThinkingAdaptive | ThinkingDisabled


class CountTokensBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /v1/messages/count_tokens` (the fields that are also in a message's
    body: see `MessagesBody` for what each does there)."""

    model: str
    messages: tuple[InputMessage, ...]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ChoiceAuto | ChoiceAny | ChoiceTool | ChoiceNone | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    cache_control: dict[str, Any] | None = None
    context_management: dict[str, Any] | None = None


class MessagesBody(CountTokensBody, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /v1/messages`: the fields the facade knows; others are a 400.

    `output_config` is translated (`translate`). Accepted and ignored, as none changes what
    the answer says: `metadata` (the caller's user id), `cache_control` (prompt caching:
    the upstreams cache, or not, on their own), `service_tier` (Anthropic's capacity and
    billing tiers), `context_management` (Anthropic clearing old thinking and tool results
    server-side: no upstream is sent earlier thinking, and the conversation goes up as the
    client sent it), `container` (the sandbox of Anthropic's code-execution tool, a server
    tool, which is a 400 here) and `inference_geo` (where Anthropic runs the model: here the
    route decides which providers answer, as the README says).
    """

    max_tokens: int
    stream: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    container: str | dict[str, Any] | None = None
    inference_geo: str | None = None


@dataclass(frozen=True, slots=True)
class Translated:
    """A Messages request as the gateway asks it."""

    messages: tuple[Message, ...]
    max_tokens: int
    options: dict[str, Any]
    show_thinking: bool
    """Whether upstream reasoning is answered as `thinking` blocks (else it is dropped)."""


def translate(body: MessagesBody) -> Translated:
    """The gateway's request for `body`; `InvalidRequest` naming what cannot be served."""
    if body.max_tokens < 1:
        raise InvalidRequest("`max_tokens` must be at least 1.", param="max_tokens")
    options: dict[str, Any] = {}
    if body.top_k is not None:
        # Sent to members that take it (OpenRouter, vLLM); a route with none is a 400 naming it.
        if body.top_k < 0:
            raise InvalidRequest("`top_k` must be at least 0.", param="top_k")
        options["top_k"] = body.top_k
    for name, value, high in (("temperature", body.temperature, 1.0), ("top_p", body.top_p, 1.0)):
        if value is not None:
            if not 0.0 <= value <= high:
                raise InvalidRequest(f"`{name}` must be between 0 and {high:g}.", param=name)
            options[name] = value
    if body.stop_sequences:
        if len(body.stop_sequences) > 4:
            raise InvalidRequest(
                "`stop_sequences` takes at most 4 sequences here (the upstreams' limit).",
                param="stop_sequences",
            )
        options["stop"] = list(body.stop_sequences)
    options.update(tool_options(body.tools, body.tool_choice))
    show = False
    if isinstance(body.thinking, ThinkingEnabled | ThinkingAdaptive):
        show = body.thinking.display != "omitted"
    if isinstance(body.thinking, ThinkingEnabled):
        options["reasoning_effort"] = effort_of(body.thinking.budget_tokens)
        if show:
            options["reasoning_format"] = "parsed"
    options.update(output_options(body.output_config))
    turn = next((m.output_config for m in reversed(body.messages) if m.output_config), None)
    options.update(output_options(turn))
    messages = to_messages(body.system, body.messages)
    if len(messages) == (1 if body.system else 0):
        # Every turn empty or only thinking: nothing an upstream would take (they refuse an
        # empty `messages` with a 400).
        raise InvalidRequest(
            "`messages` holds nothing to send: every turn is empty or only thinking.",
            param="messages",
        )
    return Translated(messages, body.max_tokens, options, show)


def effort_of(budget_tokens: int) -> str:
    """The OpenAI `reasoning_effort` for a thinking budget (LiteLLM's thresholds)."""
    return "high" if budget_tokens >= 10_000 else "medium" if budget_tokens >= 5_000 else "low"


EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
"""`output_config.effort` as OpenAI's `reasoning_effort` (which stops at `high`)."""


def output_options(config: OutputConfig | None) -> dict[str, Any]:
    """`output_config` in OpenAI's words: `effort` as `reasoning_effort` (over the one a
    thinking budget gives), `format` as a strict `json_schema` `response_format` (required:
    a member that cannot take it is skipped, as for the OpenAI API)."""
    if config is None:
        return {}
    options: dict[str, Any] = {}
    if config.effort is not None:
        options["reasoning_effort"] = EFFORTS[config.effort]
    if config.format is not None:
        schema = {"name": "output", "schema": config.format.schema, "strict": True}
        options["response_format"] = {"type": "json_schema", "json_schema": schema}
    return options


def tool_options(tools: list[Tool] | None, choice: object) -> dict[str, Any]:
    """`tools` (not the deferred ones), `tool_choice` and `parallel_tool_calls` in OpenAI's
    words."""
    options: dict[str, Any] = {}
    functions = [_function(i, t) for i, t in enumerate(tools or ()) if not t.defer_loading]
    if functions:
        options["tools"] = functions
    if choice is None or (isinstance(choice, ChoiceNone) and not functions):
        return options
    if tools and not functions and isinstance(choice, ChoiceAuto):
        return options  # every tool deferred: none to choose from yet
    if not functions:
        raise InvalidRequest("`tool_choice` needs `tools`.", param="tool_choice")
    if isinstance(choice, ChoiceAuto):
        options["tool_choice"] = "auto"
    elif isinstance(choice, ChoiceAny):
        options["tool_choice"] = "required"
    elif isinstance(choice, ChoiceTool):
        if choice.name not in {tool.name for tool in tools or () if not tool.defer_loading}:
            # Else the upstream refuses it: a 400 all the same, after a call spent.
            raise InvalidRequest(
                f"`tool_choice` names the tool {choice.name!r}, which is not in `tools`.",
                param="tool_choice.name",
            )
        options["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        options["tool_choice"] = "none"
    if getattr(choice, "disable_parallel_tool_use", None):
        options["parallel_tool_calls"] = False
    return options


def _function(i: int, tool: Tool) -> dict[str, Any]:
    if tool.type not in (None, "custom") or tool.input_schema is None:
        raise InvalidRequest(
            f"`tools[{i}]` ({tool.name!r}, type {tool.type!r}) is a server tool; only client"
            " tools with an `input_schema` are supported.",
            param=f"tools[{i}]",
        )
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def to_messages(
    system: str | list[TextBlock] | None, turns: Iterable[InputMessage]
) -> tuple[Message, ...]:
    """The conversation in the OpenAI shape: the system prompt first, each `tool_result` a
    `tool` message ahead of the rest of its turn, `tool_use` blocks an assistant's
    `tool_calls`; thinking blocks are dropped (no upstream takes another model's reasoning)."""
    out: list[Message] = []
    if system:
        out.append(Message(role="system", content=_text(system)))
    for i, turn in enumerate(turns):
        if isinstance(turn.content, str):
            out.append(Message(role=turn.role, content=turn.content))
        elif turn.role == "assistant":
            out.extend(_assistant(i, turn.content))
        else:
            out.extend(_user(i, turn.role, turn.content))
    return tuple(out)


def _text(content: str | list[TextBlock]) -> str:
    return content if isinstance(content, str) else "\n\n".join(b.text for b in content)


def _refuse(i: int, j: int, block: Block, role: str) -> InvalidRequest:
    kind = type(block).__struct_config__.tag
    return InvalidRequest(
        f"`messages[{i}].content[{j}]`: a {kind} block is not accepted in a {role} turn.",
        param=f"messages[{i}].content[{j}]",
    )


def _assistant(i: int, blocks: list[Block]) -> list[Message]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = json.dumps(block.input, ensure_ascii=False)
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": arguments},
                }
            )
        elif not isinstance(block, ThinkingBlock | RedactedThinkingBlock):
            raise _refuse(i, j, block, "assistant")
    if not texts and not calls:
        return []
    text = "\n\n".join(texts)
    if not calls:
        return [Message(role="assistant", content=text)]
    return [Message(role="assistant", content=text or None, tool_calls=calls)]


def _user(i: int, role: Literal["user", "system"], blocks: list[Block]) -> list[Message]:
    results: list[Message] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock) and role == "user":
            parts.append(_image(block))
        elif isinstance(block, ToolResultBlock) and role == "user":
            result, images = _tool_result(block)
            results.append(result)
            if images:  # a tool message takes text: its images follow in the user's message
                plural = "s" if len(images) > 1 else ""
                label = f"The image{plural} of tool result {block.tool_use_id}:"
                parts.extend([{"type": "text", "text": label}, *images])
        else:
            raise _refuse(i, j, block, role)
    if not parts:
        return results
    if all(part["type"] == "text" for part in parts):
        return [*results, Message(role=role, content="\n\n".join(p["text"] for p in parts))]
    return [*results, Message(role=role, content=parts)]


def _image(block: ImageBlock) -> dict[str, Any]:
    source = block.source
    if isinstance(source, URLSource):
        url = source.url
    else:
        url = f"data:{source.media_type};base64,{source.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: ToolResultBlock) -> tuple[Message, list[dict[str, Any]]]:
    """The tool message for a result, and the result's images as `image_url` parts (an
    OpenAI-compatible tool message takes text only; the caller sends them in a user message
    after the tool messages, so only members that take images are asked)."""
    content = block.content
    images: list[dict[str, Any]] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        images = [_image(part) for part in content if isinstance(part, ImageBlock)]
        text = "\n\n".join(part.text for part in content if isinstance(part, TextBlock))
        if images and not text:
            text = "(the result is in the next message)"
    if block.is_error:
        text = f"Error: {text}"
    return Message(role="tool", tool_call_id=block.tool_use_id, content=text), images
