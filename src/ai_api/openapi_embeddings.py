"""The OpenAPI description of `GET /v1/models/{model}` and `POST /v1/embeddings` (see
`ai_api.openapi`), and the schemas they use."""

from __future__ import annotations

from .openapi_schemas import JSON, STR, Schema, ref

_TEXT = {"type": "string", "minLength": 1}
_MODEL = {
    "type": "object",
    "required": ["id", "object", "created", "owned_by"],
    "properties": {
        "id": STR,
        "object": {"const": "model"},
        "created": {"type": "integer"},
        "owned_by": STR,
    },
}
_ANTHROPIC_MODEL = {
    "type": "object",
    "required": ["type", "id", "display_name", "created_at"],
    "properties": {"type": {"const": "model"}, "id": STR, "display_name": STR, "created_at": STR},
}


def embeddings_components() -> dict[str, Schema]:
    """The schemas of the two operations, by name."""
    return {
        "Model": _MODEL,
        "AnthropicModel": _ANTHROPIC_MODEL,
        "EmbeddingsBody": {
            "type": "object",
            "required": ["model", "input"],
            "properties": {
                "model": {**_TEXT, "description": "An embedding model's name."},
                "input": {
                    "anyOf": [_TEXT, {"type": "array", "items": _TEXT, "minItems": 1}],
                    "description": "A text or a list of texts (token arrays are a 400).",
                },
                "encoding_format": {"enum": ["float", "base64", None]},
                "dimensions": {"type": ["integer", "null"], "minimum": 1},
                "user": {"type": ["string", "null"], "description": "Ignored."},
            },
            "additionalProperties": True,
            "description": "Other fields are passed to the providers that take them (NVIDIA's"
            " `input_type`, `truncate`; Mistral's `output_dtype`) and dropped for the others.",
        },
        "EmbeddingList": {
            "type": "object",
            "required": ["object", "data", "model", "usage"],
            "properties": {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["object", "index", "embedding"],
                        "properties": {
                            "object": {"const": "embedding"},
                            "index": {"type": "integer"},
                            "embedding": {
                                "anyOf": [
                                    {"type": "array", "items": {"type": "number"}},
                                    {**STR, "description": "base64 of little-endian float32s"},
                                ]
                            },
                        },
                    },
                },
                "model": STR,
                "usage": {
                    "type": "object",
                    "required": ["prompt_tokens", "total_tokens"],
                    "properties": {
                        "prompt_tokens": {"type": "integer"},
                        "total_tokens": {"type": "integer"},
                    },
                },
            },
        },
    }


def model_operation(base: Schema) -> Schema:
    """`GET .../models/{model}` from `base`, an operation made by `openapi._operation`."""
    return {
        **base,
        "description": "Ids may hold slashes (`groq/openai/gpt-oss-120b`). A name the gateway"
        " key may not use is a 404, as it is missing from its list. With `anthropic-version`,"
        " Anthropic's model object and error shape (on `/v1` only).",
        "parameters": [
            {"name": "model", "in": "path", "required": True, "schema": STR},
            {"name": "anthropic-version", "in": "header", "schema": STR},
        ],
    }


def model_ok() -> Schema:
    """The 200 of `GET .../models/{model}`."""
    return {
        "description": "The model.",
        "content": {JSON: {"schema": {"anyOf": [ref("Model"), ref("AnthropicModel")]}}},
    }


def embeddings_operation(base: Schema) -> Schema:
    """`POST .../embeddings` from `base`, an operation made by `openapi._operation`."""
    return {
        **base,
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": ref("EmbeddingsBody"),
                    "example": {"model": "mistral/mistral-embed", "input": ["Hello"]},
                }
            },
        },
    }
