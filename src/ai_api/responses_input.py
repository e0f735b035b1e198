"""The `input` of a Responses request as Chat messages, as pure functions: message,
function_call, function_call_output, custom_tool_call, custom_tool_call_output and reasoning
items (each item's `type` may be left out
for a message, and its `id` and `status` are accepted and not needed). Part of
`ai_api.responses_wire`; no I/O here.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import msgspec

from .errors import InvalidRequest
from .schemas import Message, param_of


class TextPart(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An `input_text` or `output_text` part (annotations, logprobs and the SDKs' `parsed`
    are not sent)."""

    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None
    parsed: Any = None


class ImagePart(
    msgspec.Struct, tag="input_image", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """An `input_image` part by URL (a data URL too); a `file_id` needs stored files."""

    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class RefusalPart(
    msgspec.Struct, tag="refusal", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """A refusal of an earlier answer."""

    refusal: str


class InputText(
    TextPart, tag="input_text", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """An `input_text` part."""


class OutputText(
    TextPart, tag="output_text", tag_field="type", frozen=True, forbid_unknown_fields=True
):
    """An `output_text` part of an earlier answer."""


class MessageItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A message item (its `type` may be left out)."""

    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText | OutputText | ImagePart | RefusalPart]
    type: Literal["message"] = "message"
    id: str | None = None
    status: str | None = None
    phase: str | None = None


class FunctionCallItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A function call of an earlier answer."""

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None
    namespace: str | None = None
    parsed_arguments: Any = None
    """What the SDKs' stream helpers add to a call (openai-node's `finalResponse()` too):
    accepted, not sent."""


class FunctionCallOutputItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a function call returned: text, or text parts."""

    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputText | ImagePart]
    id: str | None = None
    status: str | None = None


class CustomToolCallItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A call of a `custom` tool of an earlier answer: its raw `input`."""

    type: Literal["custom_tool_call"]
    call_id: str
    name: str
    input: str
    id: str | None = None
    status: str | None = None
    namespace: str | None = None


class CustomToolCallOutputItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a `custom` tool call returned: text, or text parts."""

    type: Literal["custom_tool_call_output"]
    call_id: str
    output: str | list[InputText | ImagePart]
    id: str | None = None
    status: str | None = None


class ReasoningItem(msgspec.Struct, frozen=True):
    """Reasoning of an earlier answer: accepted, not sent upstream."""

    type: Literal["reasoning"]


_ITEMS: dict[str, type[Any]] = {
    "message": MessageItem,
    "function_call": FunctionCallItem,
    "function_call_output": FunctionCallOutputItem,
    "reasoning": ReasoningItem,
    "custom_tool_call": CustomToolCallItem,
    "custom_tool_call_output": CustomToolCallOutputItem,
}


def to_messages(instructions: str | None, input: str | list[dict[str, Any]]) -> tuple[Message, ...]:
    """The conversation in the Chat shape: `instructions` first as a system message, each
    item in turn; consecutive function (and custom tool) calls are one assistant message with
    `tool_calls`,
    and reasoning items are dropped (no upstream takes another model's reasoning)."""
    out: list[Message] = []
    if instructions:
        out.append(Message(role="system", content=instructions))
    if isinstance(input, str):
        out.append(Message(role="user", content=input))
        return tuple(out)
    if not input:
        raise InvalidRequest("`input` must hold at least one item.", param="input")
    shown: list[dict[str, Any]] = []  # tool outputs' images, sent after the tool messages
    for i, raw in enumerate(input):
        item = _item(i, raw)
        if shown and not isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
            out.append(Message(role="user", content=shown))
            shown = []
        if isinstance(item, MessageItem):
            out.append(_message(i, item))
        elif isinstance(item, FunctionCallItem | CustomToolCallItem):
            _add_call(out, _call(item))
        elif isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
            text, images = _output(i, item)
            out.append(Message(role="tool", tool_call_id=item.call_id, content=text))
            if images:  # a Chat tool message takes text: its images follow in a user message
                plural = "s" if len(images) > 1 else ""
                label = f"The image{plural} of the output of call {item.call_id}:"
                shown.extend([{"type": "text", "text": label}, *images])
    if shown:
        out.append(Message(role="user", content=shown))
    if not out:
        raise InvalidRequest("`input` holds nothing to answer.", param="input")
    return tuple(out)


def _call(item: FunctionCallItem | CustomToolCallItem) -> dict[str, Any]:
    """A call item as a Chat tool call."""
    if isinstance(item, FunctionCallItem):
        arguments = item.arguments
    else:  # as the custom tool was sent upstream (`responses_wire._custom`)
        arguments = json.dumps({"input": item.input}, ensure_ascii=False)
    return {
        "id": item.call_id,
        "type": "function",
        "function": {"name": _flat(item), "arguments": arguments},
    }


def _add_call(out: list[Message], call: dict[str, Any]) -> None:
    """Add a tool call to the assistant message it follows, or as one of its own."""
    last = out[-1] if out else None
    if last is not None and last.role == "assistant" and last.tool_calls is not None:
        out[-1] = Message(
            role="assistant", content=last.content, tool_calls=[*last.tool_calls, call]
        )
    elif last is not None and last.role == "assistant" and isinstance(last.content, str):
        out[-1] = Message(role="assistant", content=last.content or None, tool_calls=[call])
    else:
        out.append(Message(role="assistant", tool_calls=[call]))


def _flat(item: FunctionCallItem | CustomToolCallItem) -> str:
    """A call's Chat function name: a namespace's calls as their tools were flattened
    (`ai_api.responses_wire.chat_tools`)."""
    return f"{item.namespace}__{item.name}" if item.namespace else item.name


def _item(i: int, raw: dict[str, Any]) -> Any:
    kind = raw.get("type", "message") if isinstance(raw, dict) else None
    struct = _ITEMS.get(kind) if isinstance(kind, str) else None
    if struct is None:
        reason = (
            "the gateway keeps no items to refer to"
            if kind == "item_reference"
            else "only message, function_call, function_call_output, custom_tool_call,"
            " custom_tool_call_output and reasoning items are supported"
        )
        raise InvalidRequest(
            f"`input[{i}]` is of type {kind!r}: {reason}.", param=f"input[{i}].type"
        )
    try:
        return msgspec.convert(raw, struct)
    except msgspec.ValidationError as exc:
        inner = param_of(exc)
        param = f"input[{i}].{inner}" if inner else f"input[{i}]"
        raise InvalidRequest(f"Invalid request body: {exc} (in `{param}`)", param=param) from exc


def _message(i: int, item: MessageItem) -> Message:
    role: Literal["user", "assistant", "system"] = (
        "system" if item.role == "developer" else item.role
    )
    if isinstance(item.content, str):
        return Message(role=role, content=item.content)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(item.content):
        where = f"input[{i}].content[{j}]"
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, RefusalPart) and role == "assistant":
            parts.append({"type": "text", "text": part.refusal})
        elif isinstance(part, ImagePart) and role == "user":
            parts.append(_image(where, part))
        else:
            kind = type(part).__struct_config__.tag
            raise InvalidRequest(
                f"`{where}`: a {kind} part is not accepted in a {item.role} message.", param=where
            )
    if all(part["type"] == "text" for part in parts):
        return Message(role=role, content="".join(p["text"] for p in parts))
    return Message(role=role, content=parts)


def _image(where: str, part: ImagePart) -> dict[str, Any]:
    if part.image_url is None:
        raise InvalidRequest(
            f"`{where}`: an image needs an `image_url` (the gateway keeps no files).",
            param=f"{where}.image_url",
        )
    url: dict[str, Any] = {"url": part.image_url}
    if part.detail in ("low", "high", "auto"):
        url["detail"] = part.detail
    return {"type": "image_url", "image_url": url}


def _output(
    i: int, item: FunctionCallOutputItem | CustomToolCallOutputItem
) -> tuple[str, list[dict[str, Any]]]:
    """A tool output's text, and its images as `image_url` parts."""
    if isinstance(item.output, str):
        return item.output, []
    images = [
        _image(f"input[{i}].output[{j}]", part)
        for j, part in enumerate(item.output)
        if isinstance(part, ImagePart)
    ]
    text = "".join(part.text for part in item.output if isinstance(part, TextPart))
    return text or ("(the output is in the next message)" if images else ""), images
