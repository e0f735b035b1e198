"""Providers: the protocol, the OpenAI-compatible adapter and the built-in presets."""

from .openai_compat import OpenAICompatible
from .presets import CEREBRAS, GROQ, PRESETS, ProviderSpec
from .protocol import Answer, Provider

__all__ = ["CEREBRAS", "GROQ", "PRESETS", "Answer", "OpenAICompatible", "Provider", "ProviderSpec"]
