"""The fake's embeddings (`POST /v1/embeddings`, OpenAI's shape): deterministic unit vectors.

Each input's vector comes from a SHA-256 stream of its text, normalised to length 1, so the
same text always has the same embedding and different texts differ. `dimensions` is honoured
(`DIMENSIONS` without it); `encoding_format: "base64"` gives little-endian float32 bytes, as
OpenAI's API does. Hugging Face's feature-extraction pipeline answers the same vectors bare.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from collections.abc import Mapping
from typing import Any

from .rules import Violation
from .wire import JSON

DIMENSIONS = 16


def vector(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """The unit vector of `text`: floats in [-1, 1] from a hash stream, normalised."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend(b / 127.5 - 1.0 for b in digest)
        counter += 1
    values = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def as_base64(values: list[float]) -> str:
    """`values` as OpenAI sends them for `encoding_format: "base64"`: float32, little-endian."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def inputs_of(body: Mapping[str, Any]) -> list[str] | Violation:
    """The texts to embed (a token array counts as the text of its numbers), or why not."""
    given = body.get("input")
    if isinstance(given, str):
        given = [given]
    if not isinstance(given, list) or not given:
        return Violation("input", "`input` must be a non-empty string or array.")
    if all(isinstance(i, int) and not isinstance(i, bool) for i in given):
        given = [given]
    texts = []
    for item in given:
        if isinstance(item, str) and item:
            texts.append(item)
        elif isinstance(item, list) and item and all(isinstance(i, int) for i in item):
            texts.append(" ".join(map(str, item)))
        else:
            return Violation("input", "each input must be a non-empty string or token array.")
    return texts


def embeddings_answer(body: Mapping[str, Any], model: str) -> JSON | Violation:
    """The whole answer to a checked embeddings request, or the 400 it gets."""
    texts = inputs_of(body)
    if isinstance(texts, Violation):
        return texts
    dimensions = body.get("dimensions", DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        return Violation("dimensions", "`dimensions` must be a positive integer.")
    form = body.get("encoding_format", "float")
    if form not in ("float", "base64"):
        return Violation("encoding_format", "`encoding_format` must be `float` or `base64`.")
    data = []
    for index, text in enumerate(texts):
        values = vector(text, dimensions)
        embedding: Any = as_base64(values) if form == "base64" else values
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(len(text) // 4 + 1 for text in texts)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}


def as_features(answer: JSON, inputs: Any) -> Any:
    """`answer` as Hugging Face's feature extraction gives it: the arrays of floats alone (one
    array for one string)."""
    arrays = [item["embedding"] for item in answer["data"]]
    return arrays[0] if isinstance(inputs, str) else arrays
