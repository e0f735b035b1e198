"""Routes, strategies and the public names."""

import pytest

from ai_api.errors import NotFound
from ai_api.providers.presets import CEREBRAS, GROQ, OPENROUTER
from ai_api.routing import Deployment, Member, Route, build_router
from ai_api.schemas import Message
from ai_api.settings import MemberSettings, ModelSettings, RouteSettings, Secret, Settings
from ai_api.settings import ProviderSettings as PS


class Named:
    """Just a name: routing never calls the provider."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def open(self, request):
        raise AssertionError("routing does not open answers")


def member(name: str, weight: int = 1) -> Member:
    return Member(Deployment(Named(name), GROQ, "m", 100), weight)


HI = (Message(role="user", content="hi"),)


def test_round_robin_rotates_the_start_and_fallback_does_not():
    rr = Route("r", "round-robin", (member("groq"), member("cerebras")))
    assert [[m.deployment.name for m in rr.order(turn)] for turn in range(3)] == [
        ["groq", "cerebras"],
        ["cerebras", "groq"],
        ["groq", "cerebras"],
    ]
    fb = Route("f", "fallback", (member("groq"), member("cerebras")))
    assert [fb.order(turn)[0].deployment.name for turn in range(3)] == ["groq"] * 3


def test_weighted_spreads_by_weight_evenly_interleaved():
    route = Route("w", "weighted", (member("a", 3), member("b", 1)))
    firsts = [route.order(turn)[0].deployment.name for turn in range(8)]
    assert firsts.count("a") == 6
    assert firsts.count("b") == 2
    assert firsts[:4].count("b") == 1  # interleaved, not a burst of a's then b's
    assert {m.deployment.name for m in route.order()} == {"a", "b"}  # the rest follow


def test_deployment_caps_and_budget_keys():
    d = Deployment(Named("groq"), GROQ, "m", 100, account="team")
    assert d.request(HI).max_tokens == 100
    assert d.request(HI, max_tokens=50).max_tokens == 50
    assert d.request(HI, max_tokens=500).max_tokens == 100
    assert d.budget_key == "team|m"
    assert Deployment(Named("groq"), GROQ, "m", 1).budget_key == "groq|m"
    assert Deployment(Named("or"), OPENROUTER, "x:free", 1).budget_key == "or|*"


def provider_settings(name, spec, *models, account=""):
    models = tuple(ModelSettings(m, 10) for m in models)
    return PS(name, spec, Secret("k"), "http://x", models, account=account)


def test_build_router_names_auto_pins_bare_models_and_routes():
    settings = Settings(
        providers=(
            provider_settings("groq", GROQ, "openai/gpt-oss-120b", "llama-3.1-8b-instant"),
            provider_settings("cerebras", CEREBRAS, "gpt-oss-120b", "llama-3.1-8b-instant"),
        ),
        routes=(
            RouteSettings(
                "smart",
                "budget",
                (MemberSettings("cerebras", "zai", 2, True), MemberSettings("groq", "x")),
            ),
        ),
    )
    router = build_router(settings, {"groq": Named("groq"), "cerebras": Named("cerebras")})
    assert [d.public_name for d in router.route(None).deployments] == [
        "groq/openai/gpt-oss-120b",
        "cerebras/gpt-oss-120b",
    ]
    assert router.route("auto") is router.route(None)
    assert [d.name for d in router.route("llama-3.1-8b-instant").deployments] == [
        "groq",
        "cerebras",
    ]
    assert router.route("groq/llama-3.1-8b-instant").deployments[0].model == "llama-3.1-8b-instant"
    smart = router.route("smart")
    assert smart.strategy == "budget"
    assert [d.public_name for d in smart.deployments] == ["cerebras/zai", "groq/x"]
    assert (smart.members[0].weight, smart.members[0].pace) == (2, True)
    assert smart.deployments[0].limits == CEREBRAS.limits_for("zai")
    with pytest.raises(NotFound) as info:
        router.route("gpt-5")
    assert info.value.code == "model_not_found"
    assert "smart" in info.value.message
    assert "groq/openai/gpt-oss-120b" in info.value.message
