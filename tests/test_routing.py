"""Round-robin over deployments."""

import pytest

from ai_api.errors import NoProviders
from ai_api.routing import Deployment, RoundRobin
from ai_api.schemas import Message


class Named:
    def __init__(self, name):
        self.name = name

    def stream(self, request):  # pragma: no cover - never called here
        raise NotImplementedError


def test_round_robin_alternates_in_fixed_order():
    a = Deployment(Named("groq"), "m1", 10)
    b = Deployment(Named("cerebras"), "m2", 20)
    router = RoundRobin([a, b])
    assert [router.next().name for _ in range(5)] == ["groq", "cerebras"] * 2 + ["groq"]


def test_empty_router_says_no_providers():
    with pytest.raises(NoProviders):
        RoundRobin([]).next()


def test_deployment_builds_its_request():
    request = Deployment(Named("groq"), "m1", 10).request((Message("user", "x"),))
    assert (request.model, request.max_tokens, request.messages[0].content) == ("m1", 10, "x")
