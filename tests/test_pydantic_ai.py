"""pydantic-ai's Agent against the gateway, over the Chat Completions and the Responses APIs:
structured output (native JSON schema and tool output), a tool loop and streamed text."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import openai
import pydantic
import pytest
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

MODEL = "groq/openai/gpt-oss-120b"


class Weather(pydantic.BaseModel):
    """A forecast."""

    city: str
    days: int = pydantic.Field(ge=1)


Model = OpenAIChatModel | OpenAIResponsesModel


@pytest.fixture
async def model(gateway: str) -> AsyncIterator[Callable[[str], Model]]:
    """Models on one openai client of our own, closed at the end (pydantic-ai's default
    client is shared and left open)."""
    client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key="unused", max_retries=0)
    provider = OpenAIProvider(openai_client=client)

    def make(api: str) -> Model:
        if api == "chat":
            return OpenAIChatModel(MODEL, provider=provider)
        return OpenAIResponsesModel(MODEL, provider=provider)

    yield make
    await client.close()


APIS = pytest.mark.parametrize("api", ["chat", "responses"])


@APIS
async def test_native_output_is_a_json_schema_response_format(model, groq, api):
    agent = Agent(model(api), output_type=NativeOutput(Weather))
    result = await agent.run("The weather in Lima for three days?")
    assert result.output == Weather(city="example", days=1)  # the schema's example instance
    (request,) = groq.requests
    form = request.body["response_format"]
    assert form["type"] == "json_schema"
    assert form["json_schema"]["schema"]["properties"]["days"]["minimum"] == 1
    assert "tools" not in request.body


@APIS
async def test_tool_output_is_the_final_result_tool_called(model, groq, api):
    agent = Agent(model(api), output_type=Weather)
    result = await agent.run("The weather in Lima?")
    assert result.output == Weather(city="example", days=1)
    offered = [t["function"]["name"] for t in groq.requests[0].body["tools"]]
    assert offered == ["final_result"]


@APIS
async def test_a_tool_loop(model, groq, api):
    agent = Agent(model(api))
    ran: list[tuple[str, int]] = []

    @agent.tool_plain
    def get_weather(city: str, days: int) -> str:
        """The weather in a city for the next days."""
        ran.append((city, days))
        return f"sunny in {city} for {days} days"

    result = await agent.run("What is the weather in Lima?")
    assert ran == [("example", 1)]
    assert "the tool said: sunny in example for 1 days" in result.output
    assert len(groq.requests) == 2
    sent = groq.requests[1].body["messages"]
    assert sent[-1]["role"] == "tool"
    assert sent[-1]["content"] == "sunny in example for 1 days"


@APIS
async def test_streamed_text(model, groq, api):
    agent = Agent(model(api))
    async with agent.run_stream("Hola") as result:
        pieces = [piece async for piece in result.stream_text(delta=True, debounce_by=None)]
        final = await result.get_output()
    assert pieces  # (the fake answers so fast that pydantic-ai may join it into one piece)
    assert "".join(pieces) == final
    assert final.startswith("Hello from the fake Groq")
    assert groq.requests[0].body["stream"] is True
