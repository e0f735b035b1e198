"""The gateway's own API as an OpenAPI 3.1 document, served at `GET /openapi.json`.

Built once at app creation, from the same definitions the server validates against
(`ai_api.openapi_schemas`). tests/test_openapi.py holds it to the router's routes, and a
schemathesis run (`bench/fuzz.py`) holds the server to it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .dashboard import PAGES
from .keys import PUBLIC
from .openapi_anthropic import anthropic_components
from .openapi_embeddings import (
    embeddings_components,
    embeddings_operation,
    model_ok,
    model_operation,
)
from .openapi_responses import responses_components
from .openapi_schemas import JSON, OBJECT, STR, Schema, components, ref

SSE = "text/event-stream"


# Status -> what it means, for the error responses an operation lists.
_ERRORS: dict[int, str] = {
    400: "The request is wrong (`param` names the field when there is one), or the provider"
    " refused it as such.",
    401: "Missing or wrong gateway key.",
    403: "A web page of an origin not in `cors_origins` (an `Origin` header), or a gateway key"
    " whose scopes or models do not cover the request (`code` `permission_denied`).",
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
    529: "The provider is overloaded (the Messages API's name for a provider's 503).",
}
_ANSWER_HEADERS = {
    "X-AI-API-Provider": "The provider that answered.",
    "X-AI-API-Model": "The upstream model that answered.",
    "X-AI-API-Attempts": "How many members were tried.",
}
_EVERY = (403, 421, 500, 503)
_ANSWERS = (400, 404, 408, 413, 415, 429, 502, 503, 504)
OPENAI_ERROR = ("Error",)
ANTHROPIC_ERROR = ("AnthropicError", "Error")
"""The Messages API answers errors in its own shape; the connection cap's 503 is OpenAI's."""


def _error(status: int, shapes: tuple[str, ...] = OPENAI_ERROR) -> Schema:
    schema = ref(shapes[0]) if len(shapes) == 1 else {"anyOf": [ref(name) for name in shapes]}
    response: Schema = {"description": _ERRORS[status], "content": {JSON: {"schema": schema}}}
    if status in (429, 503):
        response["headers"] = {
            "Retry-After": {"description": "Seconds until a retry may succeed.", "schema": STR}
        }
    return response


_CACHE = {
    "name": "X-AI-API-Cache",
    "in": "header",
    "description": "The answer cache: `use` (a kept answer, or ask and keep), `refresh` (ask and"
    " keep), `skip`; without it, what the route's `cache` says.",
    "schema": {"enum": ["use", "refresh", "skip"]},
}
"""The request header of every API that asks a model for an answer (`ai_api.cache`)."""


def _answer_headers() -> Schema:
    headers: Schema = {
        name: {"description": text, "required": True, "schema": STR}
        for name, text in _ANSWER_HEADERS.items()
    }
    headers["X-AI-API-Cache"] = {
        "description": "`hit`: replayed from the answer cache (no provider asked); `miss`: asked"
        " and kept if it ends well; absent: the cache was not looked at.",
        "schema": {"enum": ["hit", "miss"]},
    }
    return headers


def _operation(
    summary: str, ok: Schema, statuses: tuple[int, ...], shapes: tuple[str, ...] = OPENAI_ERROR
) -> Schema:
    codes = sorted({*_EVERY, *statuses})
    return {
        "summary": summary,
        "responses": {"200": ok, **{str(code): _error(code, shapes) for code in codes}},
        "x-error-shapes": list(shapes),
    }


def _secure(path: str, operation: Schema, keys: bool) -> Schema:
    """`operation` at `path` as the gateway's keys hold it: a 401 where a key is needed, else
    no security requirement (`ai_api.keys.PUBLIC`, or no keys set)."""
    shapes = operation["x-error-shapes"]
    done = {name: value for name, value in operation.items() if name != "x-error-shapes"}
    if keys and not served_without_key(path):
        responses = {**operation["responses"], "401": _error(401, tuple(shapes))}
        return {**done, "responses": dict(sorted(responses.items()))}
    return {**done, "security": []}


def _whole_query(name: str, most: int, default: int) -> Schema:
    """A query parameter of a whole number from 1 to `most`."""
    schema = {"type": "integer", "minimum": 1, "maximum": most, "default": default}
    return {"name": name, "in": "query", "schema": schema}


def served_without_key(path: str) -> bool:
    """Whether the operation at `path` (a template) needs no gateway key."""
    return path in PUBLIC or path in PAGES


def _json_ok(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _paths(keys: bool) -> dict[str, Schema]:
    stream_ok = {
        "description": "The answer: JSON, or Server-Sent Events with `stream: true`.",
        "headers": _answer_headers(),
        "content": {
            JSON: {"schema": ref("ChatCompletion")},
            SSE: {"schema": ref("CompletionEvent")},
        },
    }
    completions = _operation("A chat completion from the route `model` names", stream_ok, _ANSWERS)
    completions["parameters"] = [_CACHE]
    completions["requestBody"] = {
        "required": True,
        "content": {
            JSON: {
                "schema": ref("CompletionBody"),
                "example": {
                    "model": "auto",
                    "messages": [{"role": "user", "content": "Hello"}],
                    "stream": True,
                },
            }
        },
    }
    models = _operation("Every routable model name", _json_ok("The models.", ref("ModelList")), ())
    chat = _operation(
        "The original bun-ai-api contract: the answer as Server-Sent Events or bare text",
        {
            "description": '`data: {"content"}` events, then `event: done` (or'
            " `event: error`); with `format=text`, the bare text.",
            "headers": _answer_headers(),
            "content": {SSE: {"schema": ref("ChatEvent")}, "text/plain": {"schema": STR}},
        },
        _ANSWERS,
    )
    chat["parameters"] = [
        {"name": "format", "in": "query", "schema": {"enum": ["sse", "text"], "default": "sse"}},
        _CACHE,
    ]
    chat["requestBody"] = {
        "required": True,
        "content": {
            JSON: {
                "schema": ref("ChatBody"),
                "example": {"messages": [{"role": "user", "content": "Hola, ¿cómo estás?"}]},
            }
        },
    }
    usage = _operation(
        "Spending per day, headroom per budget, health per member",
        _json_ok("The report.", ref("UsageReport")),
        (400,),
    )
    usage["parameters"] = [_whole_query("days", 366, 7)]
    one_model = model_operation(
        _operation("One routable model", model_ok(), (404,), ANTHROPIC_ERROR)
    )
    embeddings = embeddings_operation(
        _operation(
            "Embeddings of `input` from the route `model` names",
            {
                "description": "The vectors, in input order.",
                "headers": _answer_headers(),
                "content": {JSON: {"schema": ref("EmbeddingList")}},
            },
            _ANSWERS,
        )
    )
    health = _operation("The active providers", _json_ok("Up.", ref("Health")), ())
    own = _operation("This document", _json_ok("OpenAPI 3.1.", OBJECT), ())
    scrape = _operation(
        "Counts and state in Prometheus's text format (`ai_api.metrics`)",
        {
            "description": "The metrics (text format 0.0.4).",
            "content": {"text/plain": {"schema": STR}},
        },
        (),
    )
    paths: dict[str, Schema] = {
        "/chat": {"post": {"operationId": "chat", **chat}},
        "/health": {"get": {"operationId": "health", **health}},
        "/usage": {"get": {"operationId": "usage", **usage}},
        "/openapi.json": {"get": {"operationId": "openapi", **own}},
        "/metrics": {"get": {"operationId": "metrics", **scrape}},
        **_dashboard_paths(),
    }
    for prefix, tag in (("/v1", ""), ("/openai/v1", "_groq_path")):
        paths[f"{prefix}/chat/completions"] = {
            "post": {"operationId": f"chat_completions{tag}", **completions}
        }
        paths[f"{prefix}/models"] = {"get": {"operationId": f"models{tag}", **models}}
        paths[f"{prefix}/models/{{model}}"] = {"get": {"operationId": f"model{tag}", **one_model}}
        paths[f"{prefix}/embeddings"] = {"post": {"operationId": f"embeddings{tag}", **embeddings}}
    paths["/v1/models"]["get"] = _models_both_ways()
    paths.update(_messages_paths())
    paths.update(_responses_paths())
    return {
        path: {method: _secure(path, operation, keys) for method, operation in item.items()}
        for path, item in paths.items()
    }


def _dashboard_paths() -> dict[str, Schema]:
    """The dashboard's page, its files, and the JSON and events it reads (`ai_api.dashboard`)."""
    html = {"description": "The page.", "content": {"text/html": {"schema": STR}}}
    script = {"description": "The script.", "content": {"text/javascript": {"schema": STR}}}
    style = {"description": "The style.", "content": {"text/css": {"schema": STR}}}
    home = _operation("To the dashboard", {"description": "Unused."}, ())
    home["responses"] = {"302": {"description": "To `/dashboard`."}}
    hours = _operation(
        "Hourly requests, errors and tokens per provider",
        _json_ok("Oldest hour first.", ref("HourlyUsage")),
        (400,),
    )
    hours["parameters"] = [_whole_query("hours", 168, 24)]
    last = _operation(
        "The last requests to the model APIs, oldest first",
        _json_ok(
            "As the ledger keeps them.",
            {
                "type": "object",
                "required": ["requests"],
                "properties": {"requests": {"type": "array", "items": ref("RequestRecord")}},
            },
        ),
        (400,),
    )
    last["parameters"] = [_whole_query("limit", 500, 50)]
    feed = _operation(
        "Requests as they end (`event: request`) and today's usage (`event: usage`)",
        {"description": "Server-Sent Events.", "content": {"text/event-stream": {"schema": STR}}},
        (),
    )
    return {
        "/": {"get": {"operationId": "home", **home}},
        "/dashboard": {
            "get": {"operationId": "dashboard", **_operation("The dashboard", html, ())}
        },
        "/dashboard/app.js": {
            "get": {"operationId": "dashboard_js", **_operation("Its script", script, ())}
        },
        "/dashboard/app.css": {
            "get": {"operationId": "dashboard_css", **_operation("Its style", style, ())}
        },
        "/usage/hours": {"get": {"operationId": "usage_hours", **hours}},
        "/usage/requests": {"get": {"operationId": "usage_requests", **last}},
        "/usage/requests/stream": {"get": {"operationId": "usage_requests_stream", **feed}},
    }


def _models_both_ways() -> Schema:
    """`GET /v1/models`: OpenAI's list, or with `anthropic-version` Anthropic's first page
    (`limit`, `after_id` and `before_id` page it; they are read only with the header)."""
    ok = {
        "description": "OpenAI's model list; with `anthropic-version`, Anthropic's page.",
        "content": {JSON: {"schema": {"anyOf": [ref("ModelList"), ref("AnthropicModelPage")]}}},
    }
    operation = _operation("Every routable model name", ok, (400,), ANTHROPIC_ERROR)
    operation["description"] = (
        "With `anthropic-version`, Anthropic's model list, paged by the query's `limit`"
        " (1-1000, default 20), `after_id` and `before_id` (read only with that header)."
    )
    operation["parameters"] = [{"name": "anthropic-version", "in": "header", "schema": STR}]
    return {"operationId": "models", **operation}


def _messages_paths() -> dict[str, Schema]:
    """The Anthropic Messages facade: `/v1/messages` and its token count."""
    ok = {
        "description": "The message: JSON, or Anthropic's named events with `stream: true`.",
        "headers": _answer_headers(),
        "content": {
            JSON: {"schema": ref("AnthropicMessage")},
            SSE: {"schema": ref("AnthropicEvent")},
        },
    }
    messages = _operation(
        "A message from the route `model` names", ok, (*_ANSWERS, 529), ANTHROPIC_ERROR
    )
    messages["parameters"] = [_CACHE]
    messages["requestBody"] = {
        "required": True,
        "content": {
            JSON: {
                "schema": ref("MessagesBody"),
                "example": {
                    "model": "auto",
                    "max_tokens": 256,
                    "messages": [{"role": "user", "content": "Hello"}],
                },
            }
        },
    }
    count = _operation(
        "The gateway's estimate of a request's input tokens",
        _json_ok("About four characters a token.", ref("TokenCount")),
        (400, 404, 408, 413, 415),
        ANTHROPIC_ERROR,
    )
    count["requestBody"] = {"required": True, "content": {JSON: {"schema": ref("CountTokensBody")}}}
    return {
        "/v1/messages": {"post": {"operationId": "messages", **messages}},
        "/v1/messages/count_tokens": {"post": {"operationId": "count_tokens", **count}},
    }


def _responses_paths() -> dict[str, Schema]:
    """The OpenAI Responses facade: `/v1/responses`."""
    ok = {
        "description": "The response: JSON, or Responses events with `stream: true`.",
        "headers": _answer_headers(),
        "content": {JSON: {"schema": ref("Response")}, SSE: {"schema": ref("ResponsesEvent")}},
    }
    operation = _operation("A response from the route `model` names", ok, _ANSWERS)
    operation["parameters"] = [_CACHE]
    operation["requestBody"] = {
        "required": True,
        "content": {
            JSON: {
                "schema": ref("ResponsesBody"),
                "example": {"model": "auto", "input": "Hello"},
            }
        },
    }
    return {"/v1/responses": {"post": {"operationId": "responses", **operation}}}


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
            "schemas": {
                **components(),
                **anthropic_components(),
                **embeddings_components(),
                **responses_components(),
            },
            "securitySchemes": {
                "gatewayKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of the gateway's keys (`AI_API_KEYS`, or a named key of the"
                    " config file, which may be held to some scopes and models).",
                },
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "The same keys as the Anthropic SDK sends them.",
                },
            },
            "responses": {"MethodNotAllowed": _error_405(), "NotFound": _not_found()},
        },
        "security": [{"gatewayKey": []}, {"apiKey": []}] if keys else [],
    }


def _error_405() -> Schema:
    return {
        "description": "The path does not take this method.",
        "headers": {"Allow": {"description": "The methods it takes.", "schema": STR}},
        "content": {JSON: {"schema": ref("Error")}},
    }


def _not_found() -> Schema:
    return {"description": "No such endpoint.", "content": {JSON: {"schema": ref("Error")}}}
