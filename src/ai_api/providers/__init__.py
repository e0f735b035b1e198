"""Providers: the protocol, the OpenAI-compatible adapter and the built-in presets."""

from .openai_compat import OpenAICompatible
from .presets import CEREBRAS, GROQ, PRESETS, Embeddings, ProviderSpec
from .protocol import Answer, Embedded, Embedder, Lister, Provider

__all__ = [
    "CEREBRAS",
    "GROQ",
    "PRESETS",
    "Answer",
    "Embedded",
    "Embedder",
    "Embeddings",
    "Lister",
    "OpenAICompatible",
    "Provider",
    "ProviderSpec",
]
