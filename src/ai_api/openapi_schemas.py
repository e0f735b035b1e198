"""The component schemas of the OpenAPI document (`ai_api.openapi`): the request bodies as
msgspec describes the types the server decodes them with (`ai_api.schemas`), with the rules
`ai_api.params` checks after decoding written in; the answers, the SSE events and the error
body, whose `type`s are the error tree's (`ai_api.errors`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from . import params
from .errors import GatewayError
from .schemas import ChatBody, CompletionBody

JSON = "application/json"
REF = "#/components/schemas/{name}"
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to the component schema `name`."""
    return {"$ref": REF.format(name=name)}


def nullable(schema: Schema) -> Schema:
    """`schema` or null; a typed one written `"type": [..., "null"]`, the simpler form."""
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"], "default": None}
    if "const" in schema:
        return {"enum": [schema["const"], None], "default": None}
    return {"anyOf": [schema, {"type": "null"}], "default": None}


def _typed_or_null(schema: Schema) -> Schema:
    """msgspec's `{"anyOf": [{"type": T}, {"type": "null"}]}` as `_nullable` writes it."""
    options = schema.get("anyOf")
    if (
        isinstance(options, list)
        and len(options) == 2
        and options[1] == {"type": "null"}
        and set(options[0]) == {"type"}
    ):
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        return {**nullable(options[0]), **rest}
    return schema


def _error_types() -> list[str]:
    """Every OpenAI error `type` the error tree answers with."""
    found: set[str] = set()
    stack: list[type[GatewayError]] = [GatewayError]
    while stack:
        kind = stack.pop()
        found.add(kind.type)
        stack.extend(kind.__subclasses__())
    return sorted(found)


def _strict_structs(types: tuple[type[Any], ...]) -> set[str]:
    """The names of the Structs reachable from `types` that refuse unknown fields."""
    names: set[str] = set()
    seen: set[int] = set()
    stack: list[Any] = list(msgspec.inspect.multi_type_info(types))
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, msgspec.inspect.StructType):
            if node.forbid_unknown_fields:
                names.add(node.cls.__name__)
            stack.extend(field.type for field in node.fields)
        elif isinstance(node, msgspec.inspect.Type):
            for attr in type(node).__struct_fields__:
                value = getattr(node, attr)
                stack.extend(value if isinstance(value, tuple) else [value])
    return names


def struct_schemas(*types: type[Any]) -> dict[str, Schema]:
    """The JSON Schemas msgspec gives `types` and the Structs they hold, by name: a Struct
    that refuses unknown fields (a 400 naming the field) with `additionalProperties: false`."""
    _, components = msgspec.json.schema_components(types, ref_template=REF)
    strict = _strict_structs(types)
    for name, component in components.items():
        if name in strict:
            component["additionalProperties"] = False
        fields = component.get("properties", {})
        for field, schema in fields.items():
            fields[field] = _typed_or_null(schema)
    return components


def _request_schemas() -> dict[str, Schema]:
    """The request types as msgspec describes them, with what `ai_api.params` checks."""
    components = struct_schemas(ChatBody, CompletionBody)
    for name in ("ChatBody", "CompletionBody"):
        components[name]["properties"]["messages"]["minItems"] = 1
    body = components["CompletionBody"]
    fields = body["properties"]
    for name, (low, high) in params.RANGES.items():
        fields[name] = nullable({"type": "number", "minimum": low, "maximum": high})
    for name in ("max_tokens", "max_completion_tokens"):
        fields[name] = nullable({"type": "integer", "minimum": 1})
    fields["n"] = nullable({"const": 1})
    fields["stop"] = nullable(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "maxItems": params.MAX_STOP},
            ]
        }
    )
    fields["logprobs"] = nullable({"const": False})
    fields["top_logprobs"] = nullable({"const": 0})
    fields["logit_bias"] = {"type": "null", "default": None}
    for name in params.REFUSED:
        fields[name]["description"] = "Not supported by ai-api: only null (or false, 0)."
    for name in params.GATEWAY_DROPPED:
        fields[name]["description"] = "Accepted and dropped: never sent upstream."
    # `tool_choice` other than "none" needs `tools` (params.options_of).
    body["dependentSchemas"] = {
        "tool_choice": {
            "anyOf": [
                {"properties": {"tool_choice": {"enum": ["none", None]}}},
                {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}},
            ]
        }
    }
    return components


def _error_schema() -> Schema:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "code", "param"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"enum": _error_types()},
                    "code": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                },
            }
        },
    }


def _json_text(schema: Schema) -> Schema:
    """A string holding JSON that `schema` describes."""
    return {"type": "string", "contentMediaType": JSON, "contentSchema": schema}


def _event(name: str, data: Schema) -> Schema:
    """A Server-Sent Event named `name` whose data is JSON that `data` describes."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {"event": {"const": name}, "data": _json_text(data)},
    }


OBJECT = {"type": "object"}
STR = {"type": "string"}
INT = {"type": "integer"}

_RESPONSE_SCHEMAS: dict[str, Schema] = {
    "Health": {
        "type": "object",
        "required": ["status", "demo", "providers"],
        "properties": {
            "status": {"const": "ok"},
            "demo": {"type": "boolean"},
            "providers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "model"],
                    "properties": {"name": STR, "model": STR},
                },
            },
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "object", "created", "owned_by"],
                    "properties": {
                        "id": STR,
                        "object": {"const": "model"},
                        "created": INT,
                        "owned_by": STR,
                    },
                },
            },
        },
    },
    "Usage": {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {"prompt_tokens": INT, "completion_tokens": INT, "total_tokens": INT},
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": STR,
            "object": {"const": "chat.completion"},
            "created": INT,
            "model": STR,
            "system_fingerprint": STR,
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "message", "finish_reason"],
                    "properties": {
                        "index": INT,
                        "message": {
                            "type": "object",
                            "required": ["role", "content"],
                            "properties": {
                                "role": {"const": "assistant"},
                                "content": {"type": ["string", "null"]},
                                "reasoning": STR,
                                "tool_calls": {"type": "array", "items": OBJECT},
                            },
                        },
                        "logprobs": {"type": "null"},
                        "finish_reason": {"type": ["string", "null"]},
                    },
                },
            },
            "usage": ref("Usage"),
        },
    },
    "ChatCompletionChunk": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": STR,
            "object": {"const": "chat.completion.chunk"},
            "created": INT,
            "model": STR,
            "system_fingerprint": STR,
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "delta", "finish_reason"],
                    "properties": {
                        "index": INT,
                        "delta": {
                            "type": "object",
                            "properties": {
                                "role": {"const": "assistant"},
                                "content": STR,
                                "reasoning": STR,
                                "tool_calls": {"type": "array", "items": OBJECT},
                            },
                        },
                        "logprobs": {"type": "null"},
                        "finish_reason": {"type": ["string", "null"]},
                    },
                },
            },
            "usage": ref("Usage"),
        },
    },
    "CompletionEvent": {
        "description": "One event of a `stream: true` answer: a chunk, an error, or `[DONE]`.",
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"const": "message"},
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    _json_text({"anyOf": [ref("ChatCompletionChunk"), ref("Error")]}),
                ]
            },
        },
    },
    "ChatEvent": {
        "description": "One event of a `/chat` answer: a text delta, then `done` or `error`.",
        "oneOf": [
            _event("message", ref("ChatDelta")),
            _event("done", ref("ChatDone")),
            _event("error", ref("Error")),
        ],
    },
    "ChatDelta": {
        "type": "object",
        "required": ["content"],
        "properties": {"content": STR},
        "additionalProperties": False,
    },
    "ChatDone": {
        "type": "object",
        "required": ["provider", "model", "finish_reason", "usage"],
        "properties": {
            "provider": STR,
            "model": STR,
            "finish_reason": {"type": ["string", "null"]},
            "usage": {"anyOf": [ref("Usage"), {"type": "null"}]},
            "continued_by": {"description": "The member that finished the answer.", **STR},
            "demo": {"const": True},
        },
        "additionalProperties": False,
    },
    "UsageReport": {
        "type": "object",
        "required": ["now", "days", "budgets", "members"],
        "properties": {
            "now": {"type": "number"},
            "days": {"type": "array", "items": OBJECT},
            "budgets": {"type": "array", "items": OBJECT},
            "members": {"type": "array", "items": OBJECT},
        },
    },
}


def components() -> dict[str, Schema]:
    """Every schema the document refers to, by name."""
    from .store.ledger import RequestRecord

    return {
        **_request_schemas(),
        **_RESPONSE_SCHEMAS,
        **struct_schemas(RequestRecord),
        "Error": _error_schema(),
        "HourlyUsage": _HOURLY,
    }


_HOURLY = {
    "type": "object",
    "required": ["now", "since", "hours"],
    "properties": {
        "now": {"type": "number"},
        "since": INT,
        "hours": {
            "type": "array",
            "items": {
                "type": "object",
                "required": [
                    "hour",
                    "provider",
                    "requests",
                    "errors",
                    "prompt_tokens",
                    "completion_tokens",
                ],
                "properties": {
                    "hour": INT,
                    "provider": STR,
                    "requests": INT,
                    "errors": INT,
                    "prompt_tokens": INT,
                    "completion_tokens": INT,
                },
            },
        },
    },
}
