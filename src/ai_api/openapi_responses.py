"""The Responses facade's part of the OpenAPI document (`ai_api.openapi`): its request body as
msgspec describes the type `ai_api.responses_wire` decodes it with, and its answer and events
as `ai_api.responses_events` writes them (the items of `input` and `tools` are checked by
`responses_wire.translate`, not here)."""

from __future__ import annotations

from .openapi_schemas import JSON, OBJECT, STR, Schema, struct_schemas
from .responses_wire import ResponsesBody

_RESPONSE_SCHEMAS: dict[str, Schema] = {
    "Response": {
        "description": "A `response` object (`status` completed, incomplete or failed).",
        "type": "object",
        "required": ["id", "object", "created_at", "status", "model", "output"],
        "properties": {
            "id": STR,
            "object": {"const": "response"},
            "status": {"enum": ["completed", "incomplete", "failed", "in_progress"]},
            "output": {"type": "array", "items": OBJECT},
        },
    },
    "ResponsesEvent": {
        "description": "One event of a `stream: true` answer: named as its data's `type`, with"
        " its `sequence_number`; the stream ends with `data: [DONE]`.",
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": STR,
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {"type": "string", "contentMediaType": JSON, "contentSchema": OBJECT},
                ]
            },
        },
    },
}


def responses_components() -> dict[str, Schema]:
    """The facade's schemas, by name."""
    components = struct_schemas(ResponsesBody)
    fields = components["ResponsesBody"]["properties"]
    fields["store"] = {"type": ["boolean", "null"], "enum": [False, None], "default": None}
    return {**components, **_RESPONSE_SCHEMAS}
