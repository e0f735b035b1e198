"""LangChain's ChatOpenAI against the gateway: streamed tool loops and structured output."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

MODEL = "groq/openai/gpt-oss-120b"


@tool
def get_weather(city: str, days: int) -> str:
    """The weather in a city for the next days."""
    return f"sunny in {city} for {days} days"


class Weather(pydantic.BaseModel):
    """A forecast."""

    city: str
    days: int


def chat_model(gateway: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=gateway + "/v1", api_key="unused", model=MODEL, max_retries=0)  # type: ignore[arg-type]


async def streamed(model: Any, messages: list[BaseMessage]) -> AIMessageChunk:
    """The chunks of one streamed answer, joined as LangChain joins them."""
    total: AIMessageChunk | None = None
    async for chunk in model.astream(messages):
        total = chunk if total is None else total + chunk
    assert total is not None
    return total


async def test_a_streamed_tool_loop(gateway, groq):
    model = chat_model(gateway).bind_tools([get_weather])
    messages: list[BaseMessage] = [HumanMessage("What is the weather in Lima?")]
    answer = await streamed(model, messages)
    (call,) = answer.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "example", "days": 1}
    assert not answer.invalid_tool_calls
    messages += [answer, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = await streamed(model, messages)
    assert final.tool_calls == []
    assert isinstance(final.content, str)
    assert final.content
    sent = groq.requests[-1].body["messages"]
    assert sent[-1] == {
        "role": "tool",
        "content": "sunny in example for 1 days",
        "tool_call_id": call["id"],
    }


async def test_structured_output_by_function_calling_streams(gateway):
    model = chat_model(gateway).with_structured_output(Weather, method="function_calling")
    results = [part async for part in model.astream("Forecast for Lima, please.")]
    assert results
    assert results[-1] == Weather(city="example", days=1)


class Trip(pydantic.BaseModel):
    """A plan with nested models, as `with_structured_output` sends by JSON schema."""

    destination: str
    legs: list[Weather]
    budget: float | None = None


# langchain-openai dumps the SDK's parsed completion, whose `parsed` field pydantic types as None.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
async def test_structured_output_by_json_schema(gateway, groq):
    model = chat_model(gateway).with_structured_output(Trip, method="json_schema")
    trip = await model.ainvoke("Plan a trip to Lima.")
    assert isinstance(trip, Trip)
    assert trip.legs == [Weather(city="example", days=1)]
    assert groq.requests[-1].body["response_format"]["type"] == "json_schema"
    streamed = [part async for part in model.astream("Plan a trip to Lima.")]
    assert streamed[-1] == trip
