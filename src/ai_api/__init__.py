"""ai-api: one chat API over many LLM providers, spending their free tiers wisely.

The names below are the plug-in API: what a new provider module needs.
"""

from .app import create_app
from .errors import (
    GatewayError,
    InvalidRequest,
    UpstreamError,
    UpstreamProtocol,
    UpstreamStatus,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from .gateway import Gateway, build_gateway
from .providers import Answer, OpenAICompatible, Provider, ProviderSpec
from .schemas import ChatRequest, Chunk, Message, Usage
from .settings import Settings

__all__ = [
    "Answer",
    "ChatRequest",
    "Chunk",
    "Gateway",
    "GatewayError",
    "InvalidRequest",
    "Message",
    "OpenAICompatible",
    "Provider",
    "ProviderSpec",
    "Settings",
    "UpstreamError",
    "UpstreamProtocol",
    "UpstreamStatus",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "Usage",
    "build_gateway",
    "create_app",
]
