"""The fakes' JSON Schema instances, on hand-written schemas and on pydantic's."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any, Literal

import pydantic
import pytest

from ai_api.fakes.schema_values import example, example_object


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    zip: str = pydantic.Field(min_length=5, max_length=5)


class Node(pydantic.BaseModel):
    name: str
    children: list[Node] = []


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=18, le=130)
    score: float = pydantic.Field(gt=0, lt=1)
    email: str | None
    born: datetime.datetime
    day: datetime.date
    id: uuid.UUID
    colour: Colour
    kind: Literal["human"]
    home: Address
    others: list[Address] = pydantic.Field(min_length=2)
    pet: Address | Node
    tree: Node
    tags: dict[str, int]
    flags: tuple[bool, str]


@pytest.mark.parametrize("model", [Address, Node, Person])
def test_pydantic_models_validate_their_examples(model: type[pydantic.BaseModel]):
    schema = model.model_json_schema()
    instance = example(schema)
    model.model_validate(instance)
    assert example(schema) == instance  # deterministic


def test_person_example_values():
    person = Person.model_validate(example(Person.model_json_schema()))
    assert person.age == 18
    assert 0 < person.score < 1
    assert person.email is not None  # Optional[X] takes X
    assert person.colour is Colour.RED
    assert len(person.others) == 2
    assert len(person.home.zip) == 5


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "string", "format": "date-time"}, "2026-01-01T00:00:00Z"),
        ({"type": "string", "const": "x"}, "x"),
        ({"enum": [3, 4]}, 3),
        ({"type": "string", "maxLength": 3}, "exa"),
        ({"type": "string", "minLength": 10}, "examplexxx"),
        ({"type": "integer", "exclusiveMinimum": 5}, 6),
        ({"type": "integer", "maximum": -3}, -3),
        ({"type": "number", "maximum": 0.5}, 0.5),
        ({"type": "number", "exclusiveMaximum": 0.5}, -0.5),
        ({"type": "number", "exclusiveMinimum": 2}, 3),
        ({"type": "number", "minimum": 1, "exclusiveMaximum": 1.5}, 1),
        ({"type": "number", "exclusiveMinimum": 0, "maximum": 0.2}, 0.1),
        ({"type": ["null", "integer"]}, 1),
        ({"type": "null"}, None),
        ({"anyOf": [{"type": "null"}, {"type": "boolean"}]}, True),
        ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, 1),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 3}, [1, 1, 1]),
        ({"type": "array", "maxItems": 0}, []),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
            [1, "example"],
        ),
        (
            {"allOf": [{"properties": {"a": {"type": "integer"}}}, {"properties": {"b": {}}}]},
            {"a": 1, "b": "example"},
        ),
        (
            {"type": "object", "required": ["x"], "additionalProperties": {"type": "integer"}},
            {"x": 1},
        ),
        ({"$ref": "#/$defs/a~1b", "$defs": {"a/b": {"type": "boolean"}}}, True),
        ({"$ref": "#/definitions/gone"}, "example"),
        ({"$ref": "https://elsewhere.example/schema"}, "example"),
        (True, "example"),
        (None, "example"),
    ],
)
def test_tricky_schemas(schema: Any, value: Any):
    assert example(schema) == value


def test_a_recursive_schema_ends():
    schema = {
        "$defs": {
            "n": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/n"}, "v": {"type": "integer"}},
                "required": ["next", "v"],
            }
        },
        "$ref": "#/$defs/n",
    }
    depth, node = 0, example(schema)
    while isinstance(node, dict):
        depth, node = depth + 1, node["next"]
    assert 3 < depth < 20


def test_example_object_is_always_an_object():
    assert example_object({"type": "string"}) == {}
    assert example_object({"type": "object", "properties": {"a": {"type": "string"}}}) == {
        "a": "example"
    }
