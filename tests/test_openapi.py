"""The OpenAPI description (`GET /openapi.json`): a valid document that describes every route
the app serves and nothing else, public like `/health`; and a schemathesis run against it."""

from __future__ import annotations

import json

import aiohttp
import pytest
from bench import fuzz
from openapi_spec_validator import validate

from ai_api.app import create_app
from ai_api.fakes import FakeUpstream
from ai_api.gateway import build_gateway
from ai_api.keys import PUBLIC
from ai_api.openapi import describe, served_without_key
from ai_api.server import running
from ai_api.settings import GatewayKey, Secret

from .conftest import settings_for

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.mark.parametrize("keys", [False, True])
def test_the_description_is_a_valid_openapi_3_1_document(keys):
    document = describe(keys=keys)
    assert document["openapi"] == "3.1.0"
    validate(document)


def _described(document) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


async def test_every_route_is_described_and_nothing_that_is_not_served(groq, cerebras):
    async with build_gateway(settings_for(groq, cerebras)) as gateway:
        app = create_app(gateway)
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
    }
    # aiohttp answers HEAD wherever it answers GET (`add_get`): the GET describes both.
    served -= {("HEAD", path) for method, path in served if method == "GET"}
    assert served == _described(describe(keys=False))
    assert {"/health", "/openapi.json"} == PUBLIC


def test_without_gateway_keys_nothing_asks_for_one_and_no_401_is_described():
    document = describe(keys=False)
    assert document["security"] == []
    for item in document["paths"].values():
        for operation in item.values():
            assert "401" not in operation["responses"]


def test_with_gateway_keys_every_path_but_the_public_ones_needs_one():
    document = describe(keys=True)
    assert document["security"] == [{"gatewayKey": []}, {"apiKey": []}]
    for path, item in document["paths"].items():
        for operation in item.values():
            public = served_without_key(path)
            assert (operation.get("security") == []) is public
            assert ("401" in operation["responses"]) is not public


def test_the_body_fields_are_the_ones_the_server_decodes():
    from ai_api.schemas import CompletionBody

    body = describe(keys=False)["components"]["schemas"]["CompletionBody"]
    assert set(body["properties"]) == set(CompletionBody.__struct_fields__)
    assert body["required"] == ["messages"]
    assert body["additionalProperties"] is False  # an unknown field is a 400 naming it


async def test_the_description_is_served_without_a_key_and_the_api_still_needs_one(
    groq: FakeUpstream, cerebras: FakeUpstream, client: aiohttp.ClientSession
):
    settings = settings_for(
        groq, cerebras, gateway_keys=(GatewayKey("gw", Secret("sk-gw-0123456789")),)
    )
    async with running(settings) as url:
        async with client.get(f"{url}/openapi.json") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            document = json.loads(await response.read())
        async with client.get(f"{url}/v1/models") as response:
            assert response.status == 401
    assert document == json.loads(json.dumps(describe(keys=True)))


async def test_schemathesis_finds_no_failure_on_any_endpoint():
    """Every phase and default check, a few hundred requests, one seed (`bench/fuzz.py` runs
    the same at the full count)."""
    async with fuzz.gateway() as url:
        findings = await fuzz.fuzz(url, examples=3)
    assert not findings.failed, findings.output
    assert findings.requests >= 300
    for method, path in fuzz.OPERATIONS:
        assert findings.per_endpoint[f"{method} {path}"] > 0, (method, path)
    assert not any(status >= 500 for status in findings.per_status)
    assert {200, 400, 401, 405} <= set(findings.per_status)


def test_a_nullable_field_is_a_type_list_not_an_any_of():
    # msgspec writes `T | None` as an `anyOf`; a type list is the same values, simpler read.
    schemas = describe(keys=False)["components"]["schemas"]
    fields = schemas["CompletionBody"]["properties"]
    for name in ("max_tokens", "max_completion_tokens", "seed"):
        assert fields[name]["type"] == ["integer", "null"], name
    assert fields["n"]["enum"] == [1, None]
    for schema in schemas.values():
        for name, field in schema.get("properties", {}).items():
            kinds = [option.get("type") for option in field.get("anyOf", [])]
            assert "integer" not in kinds, name


def test_every_status_the_error_tree_answers_with_is_described():
    from ai_api.errors import GatewayError
    from ai_api.verdicts import client_answer

    statuses = {client_answer(upstream)[0] for upstream in range(400, 600)}
    kinds = [GatewayError]
    while kinds:
        kind = kinds.pop()
        statuses.add(kind.status)
        kinds.extend(kind.__subclasses__())
    document = describe(keys=True)
    described = {
        int(code)
        for item in document["paths"].values()
        for operation in item.values()
        for code in operation["responses"]
    }
    described |= {405}  # any path, any method it does not take: components.responses
    assert "MethodNotAllowed" in document["components"]["responses"]
    assert statuses <= described, statuses - described
