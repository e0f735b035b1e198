"""Providers: the protocol, the OpenAI-compatible adapter and the built-in presets."""

from .openai_compat import OpenAICompatible
from .presets import CEREBRAS, GROQ, PRESETS, ProviderSpec
from .protocol import Provider

__all__ = ["CEREBRAS", "GROQ", "PRESETS", "OpenAICompatible", "Provider", "ProviderSpec"]
