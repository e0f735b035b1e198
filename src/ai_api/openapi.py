"""The gateway's own API as an OpenAPI 3.1 document, served at `GET /openapi.json`.

Built once at app creation. The request bodies are the JSON Schema of the types the server
decodes them with (`ai_api.schemas`, through msgspec), with the rules `ai_api.params` checks
after decoding written in; the error statuses and their `type`s come from the error tree
(`ai_api.errors`). tests/test_openapi.py holds it to the router's routes, and a schemathesis
run holds the server to it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec

from . import params
from .errors import GatewayError
from .schemas import ChatBody, CompletionBody

JSON = "application/json"
SSE = "text/event-stream"
PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
"""Served without a gateway key: they hold nothing secret (no key, no spending)."""

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}], "default": None}


def _error_types() -> list[str]:
    """Every OpenAI error `type` the error tree answers with."""
    found: set[str] = set()
    stack: list[type[GatewayError]] = [GatewayError]
    while stack:
        kind = stack.pop()
        found.add(kind.type)
        stack.extend(kind.__subclasses__())
    return sorted(found)


def _request_schemas() -> dict[str, Schema]:
    """The request types as msgspec describes them, with what `ai_api.params` checks."""
    _, components = msgspec.json.schema_components(
        (ChatBody, CompletionBody), ref_template="#/components/schemas/{name}"
    )
    for name in ("ChatBody", "CompletionBody"):
        components[name]["properties"]["messages"]["minItems"] = 1
    body = components["CompletionBody"]
    body["additionalProperties"] = False  # forbid_unknown_fields: refused with 400 and `param`
    components["StreamOptions"]["additionalProperties"] = False
    fields = body["properties"]
    for name, (low, high) in params.RANGES.items():
        fields[name] = _nullable({"type": "number", "minimum": low, "maximum": high})
    for name in ("max_tokens", "max_completion_tokens"):
        fields[name] = _nullable({"type": "integer", "minimum": 1})
    fields["n"] = _nullable({"const": 1})
    fields["stop"] = _nullable(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "maxItems": params.MAX_STOP},
            ]
        }
    )
    fields["logprobs"] = _nullable({"const": False})
    fields["top_logprobs"] = _nullable({"const": 0})
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


_OBJECT = {"type": "object"}
_STR = {"type": "string"}
_INT = {"type": "integer"}

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
                    "properties": {"name": _STR, "model": _STR},
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
                        "id": _STR,
                        "object": {"const": "model"},
                        "created": _INT,
                        "owned_by": _STR,
                    },
                },
            },
        },
    },
    "Usage": {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {"prompt_tokens": _INT, "completion_tokens": _INT, "total_tokens": _INT},
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": _STR,
            "object": {"const": "chat.completion"},
            "created": _INT,
            "model": _STR,
            "system_fingerprint": _STR,
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "message", "finish_reason"],
                    "properties": {
                        "index": _INT,
                        "message": {
                            "type": "object",
                            "required": ["role", "content"],
                            "properties": {
                                "role": {"const": "assistant"},
                                "content": {"type": ["string", "null"]},
                                "reasoning": _STR,
                                "tool_calls": {"type": "array", "items": _OBJECT},
                            },
                        },
                        "logprobs": {"type": "null"},
                        "finish_reason": {"type": ["string", "null"]},
                    },
                },
            },
            "usage": _ref("Usage"),
        },
    },
    "ChatCompletionChunk": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": _STR,
            "object": {"const": "chat.completion.chunk"},
            "created": _INT,
            "model": _STR,
            "system_fingerprint": _STR,
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "delta", "finish_reason"],
                    "properties": {
                        "index": _INT,
                        "delta": {
                            "type": "object",
                            "properties": {
                                "role": {"const": "assistant"},
                                "content": _STR,
                                "reasoning": _STR,
                                "tool_calls": {"type": "array", "items": _OBJECT},
                            },
                        },
                        "logprobs": {"type": "null"},
                        "finish_reason": {"type": ["string", "null"]},
                    },
                },
            },
            "usage": _ref("Usage"),
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
                    _json_text({"anyOf": [_ref("ChatCompletionChunk"), _ref("Error")]}),
                ]
            },
        },
    },
    "ChatEvent": {
        "description": "One event of a `/chat` answer: a text delta, then `done` or `error`.",
        "oneOf": [
            _event("message", _ref("ChatDelta")),
            _event("done", _ref("ChatDone")),
            _event("error", _ref("Error")),
        ],
    },
    "ChatDelta": {
        "type": "object",
        "required": ["content"],
        "properties": {"content": _STR},
        "additionalProperties": False,
    },
    "ChatDone": {
        "type": "object",
        "required": ["provider", "model", "finish_reason", "usage"],
        "properties": {
            "provider": _STR,
            "model": _STR,
            "finish_reason": {"type": ["string", "null"]},
            "usage": {"anyOf": [_ref("Usage"), {"type": "null"}]},
            "continued_by": {"description": "The member that finished the answer.", **_STR},
            "demo": {"const": True},
        },
        "additionalProperties": False,
    },
    "UsageReport": {
        "type": "object",
        "required": ["now", "days", "budgets", "members"],
        "properties": {
            "now": {"type": "number"},
            "days": {"type": "array", "items": _OBJECT},
            "budgets": {"type": "array", "items": _OBJECT},
            "members": {"type": "array", "items": _OBJECT},
        },
    },
}

# Status -> what it means, for the error responses an operation lists.
_ERRORS: dict[int, str] = {
    400: "The request is wrong (`param` names the field when there is one), or the provider"
    " refused it as such.",
    401: "Missing or wrong gateway key.",
    403: "A web page of an origin not in `cors_origins` (an `Origin` header).",
    404: "No such model (`code` `model_not_found`).",
    408: "The body did not arrive within `AI_API_BODY_TIMEOUT`.",
    413: "The body is over `AI_API_MAX_BODY_BYTES`, or the provider said the request is too large.",
    415: "The body was not sent as `Content-Type: application/json`.",
    421: "The `Host` header names no host this gateway serves.",
    429: "Every member is out of headroom, or the last one tried was rate-limited.",
    500: "A bug in the gateway; the server log has details.",
    502: "The provider failed: down, unreachable, refused the gateway's key, or answered nonsense.",
    503: "The provider is overloaded, no provider is configured, or the gateway holds as many"
    " connections as it may.",
    504: "The provider did not answer within the timeout.",
}
_ANSWER_HEADERS = {
    "X-AI-API-Provider": "The provider that answered.",
    "X-AI-API-Model": "The upstream model that answered.",
    "X-AI-API-Attempts": "How many members were tried.",
}
_EVERY = (403, 421, 500, 503)
_ANSWERS = (400, 404, 408, 413, 415, 429, 502, 503, 504)


def _error(status: int) -> Schema:
    response: Schema = {
        "description": _ERRORS[status],
        "content": {JSON: {"schema": _ref("Error")}},
    }
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {"description": "Seconds until a retry may succeed.", "schema": _STR}
        }
    return response


def _answer_headers() -> Schema:
    return {
        name: {"description": text, "required": True, "schema": _STR}
        for name, text in _ANSWER_HEADERS.items()
    }


def _operation(
    summary: str, ok: Schema, statuses: tuple[int, ...], *, public: bool, keys: bool
) -> Schema:
    codes = sorted({*_EVERY, *statuses, *(() if public or not keys else (401,))})
    operation: Schema = {
        "summary": summary,
        "responses": {"200": ok, **{str(code): _error(code) for code in codes}},
    }
    if public or not keys:
        operation["security"] = []
    return operation


def _json_ok(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _paths(keys: bool) -> dict[str, Schema]:
    stream_ok = {
        "description": "The answer: JSON, or Server-Sent Events with `stream: true`.",
        "headers": _answer_headers(),
        "content": {
            JSON: {"schema": _ref("ChatCompletion")},
            SSE: {"schema": _ref("CompletionEvent")},
        },
    }
    completions = _operation(
        "A chat completion from the route `model` names",
        stream_ok,
        _ANSWERS,
        public=False,
        keys=keys,
    )
    completions["requestBody"] = {
        "required": True,
        "content": {
            JSON: {
                "schema": _ref("CompletionBody"),
                "example": {
                    "model": "auto",
                    "messages": [{"role": "user", "content": "Hello"}],
                    "stream": True,
                },
            }
        },
    }
    models = _operation(
        "Every routable model name",
        _json_ok("The models.", _ref("ModelList")),
        (),
        public=False,
        keys=keys,
    )
    chat = _operation(
        "The original bun-ai-api contract: the answer as Server-Sent Events or bare text",
        {
            "description": '`data: {"content"}` events, then `event: done` (or'
            " `event: error`); with `format=text`, the bare text.",
            "headers": _answer_headers(),
            "content": {SSE: {"schema": _ref("ChatEvent")}, "text/plain": {"schema": _STR}},
        },
        _ANSWERS,
        public=False,
        keys=keys,
    )
    chat["parameters"] = [
        {"name": "format", "in": "query", "schema": {"enum": ["sse", "text"], "default": "sse"}}
    ]
    chat["requestBody"] = {
        "required": True,
        "content": {
            JSON: {
                "schema": _ref("ChatBody"),
                "example": {"messages": [{"role": "user", "content": "Hola, ¿cómo estás?"}]},
            }
        },
    }
    usage = _operation(
        "Spending per day, headroom per budget, health per member",
        _json_ok("The report.", _ref("UsageReport")),
        (400,),
        public=False,
        keys=keys,
    )
    usage["parameters"] = [
        {
            "name": "days",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 366, "default": 7},
        }
    ]
    health = _operation(
        "The active providers", _json_ok("Up.", _ref("Health")), (), public=True, keys=keys
    )
    own = _operation("This document", _json_ok("OpenAPI 3.1.", _OBJECT), (), public=True, keys=keys)
    paths: dict[str, Schema] = {
        "/chat": {"post": {"operationId": "chat", **chat}},
        "/health": {"get": {"operationId": "health", **health}},
        "/usage": {"get": {"operationId": "usage", **usage}},
        "/openapi.json": {"get": {"operationId": "openapi", **own}},
    }
    for prefix, tag in (("/v1", ""), ("/openai/v1", "_groq_path")):
        paths[f"{prefix}/chat/completions"] = {
            "post": {"operationId": f"chat_completions{tag}", **completions}
        }
        paths[f"{prefix}/models"] = {"get": {"operationId": f"models{tag}", **models}}
    return paths


def describe(*, keys: bool) -> dict[str, Any]:
    """The OpenAPI document; `keys`: the gateway requires a key (`AI_API_KEYS`)."""
    try:
        release = version("ai-api")
    except PackageNotFoundError:  # run from a checkout that was never installed
        release = "0"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ai-api",
            "version": release,
            "description": "One chat API over many LLM providers. Any path answers 404 when"
            " it is unknown and 405 (with `Allow`) for a method it does not take, with the"
            " same error body.",
        },
        "paths": _paths(keys),
        "components": {
            "schemas": {**_request_schemas(), **_RESPONSE_SCHEMAS, "Error": _error_schema()},
            "securitySchemes": {
                "gatewayKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the gateway's keys (`AI_API_KEYS`).",
                }
            },
            "responses": {"MethodNotAllowed": _error_405(), "NotFound": _not_found()},
        },
        "security": [{"gatewayKey": []}] if keys else [],
    }


def _error_405() -> Schema:
    return {
        "description": "The path does not take this method.",
        "headers": {"Allow": {"description": "The methods it takes.", "schema": _STR}},
        "content": {JSON: {"schema": _ref("Error")}},
    }


def _not_found() -> Schema:
    return {"description": "No such endpoint.", "content": {JSON: {"schema": _ref("Error")}}}
