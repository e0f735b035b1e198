"""`POST /v1/embeddings` driven by the official openai SDK over fake upstreams: floats and
base64, field maps, failover, errors and the ledger."""

from __future__ import annotations

import base64
import dataclasses
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from ai_api.config import load_settings, preset_settings
from ai_api.fakes import FLAVORS, FakeUpstream, Fault
from ai_api.fakes.embeddings import DIMENSIONS, vector
from ai_api.providers.presets import GEMINI, HUGGINGFACE, MISTRAL, OLLAMA, rates
from ai_api.server import running
from ai_api.settings import GatewayKey, Secret, Settings

EMBEDDER = dataclasses.replace(
    FLAVORS["openai"], embedding_models=("mistral-embed", "gemini-embedding-001")
)


def mistral(fake: FakeUpstream, name: str = "mistral") -> Any:
    env = {"MISTRAL_API_KEY": "k"}
    return preset_settings(MISTRAL, env, name=name, base_url=fake.base_url + "/v1")


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    async with FakeUpstream(EMBEDDER) as one, FakeUpstream(EMBEDDER) as two:
        yield one, two


@pytest.fixture
async def gateway(fakes, tmp_path) -> AsyncIterator[str]:
    one, two = fakes
    providers = (mistral(one), mistral(two, "mistral2"))
    ledger = str(tmp_path / "usage.sqlite3")
    async with running(Settings(providers=providers, port=0, ledger=ledger)) as url:
        yield url


def sdk(url: str, prefix: str = "/v1") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + prefix, api_key="unused", max_retries=0)


def float32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


async def test_floats_in_input_order(gateway, fakes):
    async with sdk(gateway) as client:
        done = await client.embeddings.create(
            model="mistral/mistral-embed", input=["first", "second"], encoding_format="float"
        )
    assert [d.index for d in done.data] == [0, 1]
    assert done.data[0].embedding == vector("first")
    assert done.data[1].embedding == vector("second")
    assert len(done.data[0].embedding) == DIMENSIONS
    assert done.model == "mistral-embed"
    assert done.usage.prompt_tokens == done.usage.total_tokens > 0
    sent = fakes[0].requests[-1].body
    assert sent == {"model": "mistral-embed", "input": ["first", "second"]}


async def test_the_sdk_default_base64_is_decoded(gateway):
    # Without `encoding_format` the SDK asks for base64 and decodes it into floats.
    async with sdk(gateway) as client:
        done = await client.embeddings.create(model="mistral/mistral-embed", input="hello")
    assert done.data[0].embedding == float32(vector("hello"))


async def test_explicit_base64_is_float32_little_endian(gateway, fakes):
    async with sdk(gateway, "/openai/v1") as client:
        done = await client.embeddings.create(
            model="mistral/mistral-embed", input="hello", encoding_format="base64"
        )
    raw = base64.b64decode(done.data[0].embedding)  # type: ignore[arg-type]
    assert list(struct.unpack(f"<{DIMENSIONS}f", raw)) == float32(vector("hello"))
    assert "encoding_format" not in fakes[0].requests[-1].body  # upstreams give floats


async def test_dimensions_and_extra_fields_in_the_providers_names(gateway, fakes):
    async with sdk(gateway) as client:
        await client.embeddings.create(
            model="mistral/mistral-embed",
            input="x",
            dimensions=8,
            user="someone",
            extra_body={"output_dtype": "float", "input_type": "query"},
        )
    sent = fakes[0].requests[-1].body
    assert sent == {
        "model": "mistral-embed",
        "input": ["x"],
        "output_dimension": 8,
        "output_dtype": "float",  # Mistral's own; `input_type` is NVIDIA's, `user` dropped
    }


async def test_failover_on_5xx_and_429(gateway, fakes, client):
    one, two = fakes
    one.default_fault = Fault(status=503)
    answers = []
    for _ in range(3):
        async with client.post(
            gateway + "/v1/embeddings", json={"model": "mistral-embed", "input": "hi"}
        ) as response:
            assert response.status == 200, await response.text()
            answers.append(response.headers["X-AI-API-Provider"])
    assert answers == ["mistral2"] * 3
    assert one.hits["POST /v1/embeddings"] >= 1
    two.add_fault(Fault(status=429, retry_after=30))
    one.heal()
    async with sdk(gateway) as sdk_client:
        done = await sdk_client.embeddings.with_raw_response.create(
            model="mistral-embed", input="hi"
        )
    assert done.headers["X-AI-API-Provider"] == "mistral"


async def test_errors(gateway, fakes):
    async with sdk(gateway) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.embeddings.create(model="mistral/nope", input="x")
        assert missing.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError) as tokens:
            await client.embeddings.create(model="mistral-embed", input=[[1, 2, 3]])
        assert tokens.value.param == "input"
        with pytest.raises(openai.BadRequestError) as empty:
            await client.embeddings.create(model="mistral-embed", input=[])
        assert empty.value.param == "input"
        with pytest.raises(openai.BadRequestError) as form:
            await client.embeddings.create(
                model="mistral-embed",
                input="x",
                encoding_format="int8",  # type: ignore[arg-type]
            )
        assert form.value.param == "encoding_format"
        for fake in fakes:
            fake.default_fault = Fault(status=500)
        with pytest.raises(openai.APIStatusError) as failed:
            await client.embeddings.create(model="mistral-embed", input="x")
    assert failed.value.status_code >= 500
    assert "2 attempts failed" in failed.value.message


async def test_dimensions_where_no_member_takes_them(tmp_path):
    flavor = EMBEDDER.mounted(embeddings_path="/v1beta/openai/embeddings")
    async with FakeUpstream(flavor) as fake:
        env = {"GEMINI_API_KEY": "k"}
        gemini = preset_settings(GEMINI, env, base_url=fake.base_url + "/v1beta/openai")
        settings = Settings(providers=(gemini,), port=0, ledger="")
        async with running(settings) as url, sdk(url) as client:
            done = await client.embeddings.create(model="gemini-embedding-001", input="x")
            assert len(done.data[0].embedding) == DIMENSIONS
            with pytest.raises(openai.BadRequestError) as info:
                await client.embeddings.create(
                    model="gemini-embedding-001", input="x", dimensions=8
                )
    assert info.value.param == "dimensions"
    assert "gemini/gemini-embedding-001" in info.value.message


async def test_the_ledger_records_every_attempt(gateway, fakes, client):
    fakes[0].add_fault(Fault(status=503))
    async with client.post(
        gateway + "/v1/embeddings", json={"model": "mistral/mistral-embed", "input": "hi"}
    ) as response:
        assert response.status == 503
    async with client.post(
        gateway + "/v1/embeddings", json={"model": "mistral2/mistral-embed", "input": "hi"}
    ) as response:
        assert response.status == 200
    async with client.get(gateway + "/usage") as response:
        days = (await response.json())["days"]
    rows = {(r["provider"], r["model"]): r for r in days}
    assert rows[("mistral", "mistral-embed")]["requests"] == 1
    assert rows[("mistral2", "mistral-embed")]["requests"] == 1


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def test_a_local_server_takes_any_model_name():
    async with FakeUpstream(EMBEDDER) as fake:
        ollama = preset_settings(
            OLLAMA, {"OLLAMA_MODEL": "generic-large"}, base_url=fake.base_url + "/v1"
        )
        settings = Settings(providers=(ollama,), port=0, ledger="")
        async with running(settings) as url, sdk(url) as client:
            done = await client.embeddings.create(model="ollama/mistral-embed", input="x")
            again = await client.embeddings.create(model="ollama/mistral-embed", input="y")
            with pytest.raises(openai.APIStatusError) as gone:  # the server's own 404
                await client.embeddings.create(model="ollama/not-loaded", input="x")
            with pytest.raises(openai.NotFoundError) as unknown:
                await client.embeddings.create(model="mistral-embed", input="x")
    assert done.data[0].embedding == float32(vector("x"))
    assert again.data[0].embedding == float32(vector("y"))
    assert unknown.value.code == "model_not_found"  # a bare name is a listed model's only
    assert gone.value.status_code == 502
    assert "not-loaded" in gone.value.message


async def test_keys_hold_embeddings_to_their_scope_and_models(fakes):
    full, chat, lister = "full-0123456789abcdef", "chat-0123456789abcdef", "list-0123456789abcd"
    keys = (
        GatewayKey("AI_API_KEYS", Secret(full)),
        GatewayKey("ci", Secret(chat), frozenset({"chat"}), ("mistral/*",)),
        GatewayKey("lister", Secret(lister), frozenset({"models"})),
    )
    providers = (mistral(fakes[0]), mistral(fakes[1], "mistral2"))
    settings = Settings(providers=providers, port=0, ledger="", gateway_keys=keys)
    async with running(settings) as url:
        for key in (full, chat):
            async with sdk_with(url, key) as client:
                assert (
                    await client.embeddings.create(model="mistral/mistral-embed", input="x")
                ).data
        async with sdk_with(url, chat) as client:
            with pytest.raises(openai.PermissionDeniedError) as model:
                await client.embeddings.create(model="mistral2/mistral-embed", input="x")
        assert model.value.param == "model"
        async with sdk_with(url, lister) as client:
            with pytest.raises(openai.PermissionDeniedError):
                await client.embeddings.create(model="mistral/mistral-embed", input="x")


def sdk_with(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


async def test_a_member_out_of_room_is_not_asked(fakes, client):
    one, _ = fakes
    assert MISTRAL.embeddings is not None
    offer = dataclasses.replace(MISTRAL.embeddings, limits={"*": rates(rpm=1)})
    limited = dataclasses.replace(MISTRAL, embeddings=offer)
    p = dataclasses.replace(mistral(one), spec=limited)
    async with running(Settings(providers=(p,), port=0, ledger="")) as url:
        body = {"model": "mistral/mistral-embed", "input": "hi"}
        async with client.post(url + "/v1/embeddings", json=body) as first:
            assert first.status == 200
        async with client.post(url + "/v1/embeddings", json=body) as second:
            assert second.status == 429
            assert int(second.headers["Retry-After"]) > 0
    assert one.hits["POST /v1/embeddings"] == 1


async def test_a_config_file_endpoint_serves_any_model_with_dimensions(tmp_path):
    async with FakeUpstream(FLAVORS["openai"], api_key="box-key") as fake:
        path = tmp_path / "ai-api.toml"
        path.write_text(
            f"""
[providers.box]
kind = "openai"
base_url = "{fake.base_url}/v1"
api_key_env = "BOX_KEY"
models = ["generic-large"]
"""
        )
        settings = load_settings({"BOX_KEY": "box-key"}, path).with_overrides(port=0, ledger="")
        async with running(settings) as url, sdk(url) as client:
            done = await client.embeddings.create(
                model="box/generic-embed", input="x", dimensions=5, encoding_format="float"
            )
    assert done.data[0].embedding == vector("x", 5)
    assert fake.requests[-1].body["dimensions"] == 5


async def test_a_dropped_connection_fails_over(gateway, fakes):
    one = fakes[0]
    one.default_fault = Fault(drop=True)
    async with sdk(gateway) as client:
        for _ in range(2):
            done = await client.embeddings.with_raw_response.create(
                model="mistral-embed", input="hi", encoding_format="float"
            )
            assert done.headers["X-AI-API-Provider"] == "mistral2"
            assert done.parse().data[0].embedding == vector("hi")
    assert one.hits["POST /v1/embeddings"] >= 1
    assert all(r.status == 0 for r in one.requests)


async def test_hugging_face_feature_extraction_in_openai_shape():
    flavor = dataclasses.replace(
        EMBEDDER,
        embedding_models=("BAAI/bge-small-en-v1.5",),
        feature_extraction_path="/hf-inference/models/{model}/pipeline/feature-extraction",
    )
    async with FakeUpstream(flavor) as fake:
        hf = preset_settings(HUGGINGFACE, {"HF_TOKEN": "k"}, base_url=fake.base_url + "/v1")
        settings = Settings(providers=(hf,), port=0, ledger="")
        async with running(settings) as url, sdk(url) as client:
            done = await client.embeddings.create(
                model="huggingface/BAAI/bge-small-en-v1.5", input=["a", "b"]
            )
            coded = await client.embeddings.create(
                model="huggingface/BAAI/bge-small-en-v1.5", input="a", encoding_format="base64"
            )
    assert [d.embedding for d in done.data] == [float32(vector("a")), float32(vector("b"))]
    assert done.usage.prompt_tokens > 0  # estimated: the pipeline reports none
    raw = base64.b64decode(coded.data[0].embedding)  # type: ignore[arg-type]
    assert list(struct.unpack(f"<{DIMENSIONS}f", raw)) == float32(vector("a"))
    seen = fake.requests[0]
    assert seen.body == {"inputs": ["a", "b"]}
    assert (
        fake.hits["POST /hf-inference/models/BAAI/bge-small-en-v1.5/pipeline/feature-extraction"]
        == 2
    )


async def test_a_silent_member_times_out_and_fails_over(fakes):
    one, two = fakes
    one.default_fault = Fault(headers_delay=5)
    providers = (mistral(one), mistral(two, "mistral2"))
    settings = Settings(providers=providers, port=0, ledger="", read_timeout=0.3)
    async with running(settings) as url, sdk(url) as client:
        for _ in range(2):
            done = await client.embeddings.with_raw_response.create(
                model="mistral-embed", input="hi"
            )
            assert done.headers["X-AI-API-Provider"] == "mistral2"
        two.default_fault = Fault(headers_delay=5)
        with pytest.raises(openai.APIStatusError) as info:
            await client.embeddings.create(model="mistral2/mistral-embed", input="hi")
    assert info.value.status_code == 504


async def test_embedding_models_are_listed_and_retrieved(gateway, client):
    async with sdk(gateway) as openai_client:
        names = [m.id async for m in openai_client.models.list()]
        got = await openai_client.models.retrieve("mistral/mistral-embed")
        bare = await openai_client.models.retrieve("mistral-embed")
    assert {"mistral/mistral-embed", "mistral2/mistral-embed", "mistral-embed"} <= set(names)
    assert (got.owned_by, bare.owned_by) == ("mistral", "ai-api")
    headers = {"anthropic-version": "2023-06-01"}
    async with client.get(gateway + "/v1/models", headers=headers) as response:
        anthropic_names = [m["id"] for m in (await response.json())["data"]]
    assert "mistral-embed" not in anthropic_names  # Claude Code picks chat models from it
    async with client.get(gateway + "/v1/models/mistral-embed", headers=headers) as response:
        assert response.status == 404
