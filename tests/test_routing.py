"""Routes, strategies, the public names and the failover loop (providers in memory)."""

from collections.abc import AsyncGenerator

import pytest

from ai_api.config import ModelSettings, RouteSettings, Secret, Settings
from ai_api.config import ProviderSettings as PS
from ai_api.errors import (
    InvalidRequest,
    NoProviders,
    NotFound,
    UpstreamError,
    UpstreamStatus,
    UpstreamUnreachable,
)
from ai_api.providers.presets import CEREBRAS, GROQ, MISTRAL
from ai_api.routing import Deployment, Route, build_router, open_stream
from ai_api.schemas import ChatRequest, Chunk, Message


class Scripted:
    """A provider that fails with the queued errors, then answers `ok`."""

    def __init__(self, name: str, *errors: UpstreamError) -> None:
        self.name = name
        self.errors = list(errors)
        self.seen: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Chunk, None]:
        self.seen.append(request)
        if self.errors:
            raise self.errors.pop(0)
        yield Chunk(content="ok", finish_reason="stop")


def deployment(provider: Scripted, spec=GROQ, model="m", cap=100) -> Deployment:
    return Deployment(provider, spec, model, cap)


HI = (Message(role="user", content="hi"),)


def test_round_robin_rotates_the_start_and_fallback_does_not():
    a, b = deployment(Scripted("groq")), deployment(Scripted("cerebras"))
    rr = Route("r", "round-robin", [a, b])
    assert [[d.name for d in rr.order()] for _ in range(3)] == [
        ["groq", "cerebras"],
        ["cerebras", "groq"],
        ["groq", "cerebras"],
    ]
    fb = Route("f", "fallback", [a, b])
    assert [fb.order()[0].name for _ in range(3)] == ["groq"] * 3


def test_deployment_caps_the_clients_max_tokens():
    d = deployment(Scripted("groq"), cap=100)
    assert d.request(HI).max_tokens == 100
    assert d.request(HI, max_tokens=50).max_tokens == 50
    assert d.request(HI, max_tokens=500).max_tokens == 100


def provider_settings(name, spec, *models):
    return PS(name, spec, Secret("k"), "http://x", tuple(ModelSettings(m, 10) for m in models))


def test_build_router_names_auto_pins_bare_models_and_routes():
    settings = Settings(
        providers=(
            provider_settings("groq", GROQ, "openai/gpt-oss-120b", "llama-3.1-8b-instant"),
            provider_settings("cerebras", CEREBRAS, "gpt-oss-120b", "llama-3.1-8b-instant"),
        ),
        routes=(RouteSettings("smart", "fallback", (("cerebras", "zai"), ("groq", "x"))),),
    )
    router = build_router(settings, {"groq": Scripted("groq"), "cerebras": Scripted("cerebras")})
    assert [d.public_name for d in router.route(None).members] == [
        "groq/openai/gpt-oss-120b",
        "cerebras/gpt-oss-120b",
    ]
    assert router.route("auto") is router.route(None)
    assert [d.name for d in router.route("llama-3.1-8b-instant").members] == ["groq", "cerebras"]
    assert router.route("groq/llama-3.1-8b-instant").members[0].model == "llama-3.1-8b-instant"
    smart = router.route("smart")
    assert smart.strategy == "fallback"
    assert [d.public_name for d in smart.members] == ["cerebras/zai", "groq/x"]
    with pytest.raises(NotFound) as info:
        router.route("gpt-5")
    assert info.value.code == "model_not_found"
    assert "smart" in info.value.message
    assert "groq/openai/gpt-oss-120b" in info.value.message


async def test_failover_passes_retryable_errors_to_the_next_member():
    groq = Scripted("groq", UpstreamStatus("groq", 429, "slow down"))
    cerebras = Scripted("cerebras")
    route = Route("r", "fallback", [deployment(groq), deployment(cerebras, CEREBRAS)])
    opened = await open_stream(route, lambda d: d.request(HI))
    assert (opened.deployment.name, opened.attempts) == ("cerebras", 2)
    assert opened.first == Chunk(content="ok", finish_reason="stop")
    await opened.chunks.aclose()


async def test_a_request_error_is_not_retried():
    groq = Scripted("groq", UpstreamStatus("groq", 400, "context too long"))
    cerebras = Scripted("cerebras")
    route = Route("r", "fallback", [deployment(groq), deployment(cerebras, CEREBRAS)])
    with pytest.raises(UpstreamStatus) as info:
        await open_stream(route, lambda d: d.request(HI))
    assert info.value.status == 400
    assert cerebras.seen == []


async def test_when_every_member_fails_the_error_names_each_attempt():
    groq = Scripted("groq", UpstreamStatus("groq", 500, "boom"))
    cerebras = Scripted("cerebras", UpstreamUnreachable("cerebras", "refused"))
    route = Route("r", "fallback", [deployment(groq), deployment(cerebras, CEREBRAS)])
    with pytest.raises(UpstreamError) as info:
        await open_stream(route, lambda d: d.request(HI))
    assert "2 attempts failed" in info.value.message
    assert "groq: HTTP 500: boom" in info.value.message
    assert "cerebras: refused" in info.value.message
    assert info.value.headers["X-AI-API-Attempts"] == "2"


async def test_members_that_cannot_take_a_field_are_skipped():
    mistral = Scripted("mistral")
    groq = Scripted("groq")
    route = Route("r", "fallback", [deployment(mistral, MISTRAL), deployment(groq, GROQ)])
    opened = await open_stream(route, lambda d: d.request(HI), ["reasoning_format", "tools"])
    assert opened.deployment.name == "mistral"  # reasoning_format is droppable, tools taken
    await opened.chunks.aclose()


async def test_a_route_without_members_has_no_providers():
    with pytest.raises(NoProviders):
        await open_stream(Route("empty", "round-robin", []), lambda d: d.request(HI))


async def test_a_field_no_member_takes_is_a_400():
    cohere = Deployment(Scripted("cf"), _spec_without("stop"), "m", 10)
    with pytest.raises(InvalidRequest, match="No provider of `r` takes `stop`") as info:
        await open_stream(Route("r", "round-robin", [cohere]), lambda d: d.request(HI), ["stop"])
    assert info.value.param == "stop"


def _spec_without(field):
    from dataclasses import replace

    return replace(GROQ, params=GROQ.params - {field})
