"""The Anthropic Messages facade's part of the OpenAPI document (`ai_api.openapi`): its
request bodies as msgspec describes the types `ai_api.anthropic_wire` decodes them with, with
the rules `anthropic_wire.translate` checks written in, and its answers, events and errors as
`ai_api.anthropic_events` writes them."""

from __future__ import annotations

from .anthropic_wire import CountTokensBody, MessagesBody
from .openapi_schemas import INT, OBJECT, STR, Schema, nullable, ref, struct_schemas

_NEEDS_TOOLS = {
    "tool_choice": {
        "anyOf": [
            {"properties": {"tool_choice": {"anyOf": [{"type": "null"}, ref("ChoiceNone")]}}},
            {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}},
        ]
    }
}
"""`tool_choice` (other than `none`) needs `tools` (`anthropic_wire.tool_options`)."""


_BLOCKS_OF = {
    "user": ("TextBlock", "ImageBlock", "ToolResultBlock"),
    "assistant": ("TextBlock", "ToolUseBlock", "ThinkingBlock", "RedactedThinkingBlock"),
    "system": ("TextBlock",),
}
"""The blocks each role's turn takes (`anthropic_wire.to_messages` refuses the others)."""


_SAYS = {
    "required": ["type"],
    "properties": {"type": {"enum": ["text", "image", "tool_use", "tool_result"]}},
}
"""A block that becomes part of a message (thinking blocks are dropped)."""


def _turn(role: str) -> Schema:
    blocks = {"anyOf": [ref(name) for name in _BLOCKS_OF[role]]}
    return {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"const": role},
            "content": {"anyOf": [STR, {"type": "array", "items": blocks}]},
        },
        "additionalProperties": False,
    }


def _request_schemas() -> dict[str, Schema]:
    components = struct_schemas(MessagesBody, CountTokensBody)
    components["InputMessage"] = {
        "description": components["InputMessage"]["description"],
        "oneOf": [_turn(role) for role in _BLOCKS_OF],
    }
    # A tool's result is text: an image in it is refused (OpenAI's tool messages take text).
    components["ToolResultBlock"]["properties"]["content"] = nullable(
        {"anyOf": [STR, {"type": "array", "items": ref("TextBlock")}]}
    )
    # Outside a union msgspec does not need a block's tag: `system` blocks may leave it out.
    system_block = components["SystemBlock"] = dict(components["TextBlock"])
    system_block["required"] = ["text"]
    system = nullable({"anyOf": [STR, {"type": "array", "items": ref("SystemBlock")}]})
    for name in ("MessagesBody", "CountTokensBody"):
        body = components[name]
        body["properties"]["messages"]["minItems"] = 1
        body["properties"]["system"] = system
        body["dependentSchemas"] = _NEEDS_TOOLS
    fields = components["MessagesBody"]["properties"]
    # At least one turn says something (`translate` refuses a conversation of empty turns).
    fields["messages"]["contains"] = {
        "properties": {"content": {"anyOf": [STR, {"type": "array", "contains": _SAYS}]}}
    }
    fields["max_tokens"] = {"type": "integer", "minimum": 1}
    for name in ("temperature", "top_p"):
        fields[name] = nullable({"type": "number", "minimum": 0.0, "maximum": 1.0})
    fields["top_k"] = nullable(
        {
            "type": "integer",
            "minimum": 0,
            "description": "Sent to route members that take it (OpenRouter, vLLM); a route"
            " with none answers 400 naming it.",
        }
    )
    fields["stop_sequences"] = nullable({"type": "array", "items": STR, "maxItems": 4})
    # A message takes client tools only (a count takes any): no `type` of a server tool, an
    # `input_schema` always.
    tool = components["ClientTool"] = dict(components["Tool"])
    tool["properties"] = {
        **tool["properties"],
        "type": {"enum": [None, "custom"], "default": None},
        "input_schema": OBJECT,
    }
    tool["required"] = ["name", "input_schema"]
    fields["tools"] = nullable({"type": "array", "items": ref("ClientTool")})
    return components


_USAGE = {
    "type": "object",
    "required": ["input_tokens", "output_tokens"],
    "properties": {"input_tokens": INT, "output_tokens": INT},
}

_RESPONSE_SCHEMAS: dict[str, Schema] = {
    "AnthropicMessage": {
        "type": "object",
        "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
        "properties": {
            "id": STR,
            "type": {"const": "message"},
            "role": {"const": "assistant"},
            "model": STR,
            "content": {
                "type": "array",
                "items": {"type": "object", "required": ["type"], "properties": {"type": STR}},
            },
            "stop_reason": {"type": ["string", "null"]},
            "stop_sequence": {"type": ["string", "null"]},
            "usage": _USAGE,
        },
    },
    "AnthropicEvent": {
        "description": "One event of a `stream: true` answer: named as its data's `type`.",
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {
                "enum": [
                    "message_start",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_stop",
                    "message_delta",
                    "message_stop",
                    "ping",
                    "error",
                ]
            },
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"type": "object", "required": ["type"]},
            },
        },
    },
    "TokenCount": {
        "type": "object",
        "required": ["input_tokens"],
        "properties": {"input_tokens": INT},
    },
    "AnthropicModelPage": {
        "type": "object",
        "required": ["data", "has_more", "first_id", "last_id"],
        "properties": {
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "id", "display_name", "created_at"],
                    "properties": {
                        "type": {"const": "model"},
                        "id": STR,
                        "display_name": STR,
                        "created_at": STR,
                    },
                },
            },
            "has_more": {"type": "boolean"},
            "first_id": {"type": ["string", "null"]},
            "last_id": {"type": ["string", "null"]},
        },
    },
    "AnthropicError": {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": STR, "message": STR},
            },
        },
    },
}


def anthropic_components() -> dict[str, Schema]:
    """The facade's schemas, by name."""
    return {**_request_schemas(), **_RESPONSE_SCHEMAS}
