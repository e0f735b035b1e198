"""Fake Groq, Cerebras and OpenAI-compatible upstreams for tests, demo mode and the benchmark.

Real HTTP servers on 127.0.0.1 that speak each provider's wire format and misbehave on demand.
"""

from .flavors import FLAVORS, Flavor
from .server import FakeUpstream, SeenRequest
from .stream import Fault

__all__ = ["FLAVORS", "FakeUpstream", "Fault", "Flavor", "SeenRequest"]
