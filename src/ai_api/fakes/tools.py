"""Tool calling: when the fake calls a function instead of answering, which one, with what.

The fake calls a tool whenever a request offers `tools`, `tool_choice` is not `"none"` and the
conversation ends with a user turn (system turns after it aside); after a `tool` result it
answers in text again. Arguments
are example values read off the function's JSON schema, so they always parse and validate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .wire import JSON, ToolCall

# Example value per scalar JSON-schema type; anything unknown gets the string's.
_EXAMPLES: dict[str, Any] = {"string": "example", "number": 1, "integer": 1, "boolean": True}


def offered_functions(body: Mapping[str, Any]) -> list[JSON]:
    """The `function` objects of the request's `tools` that have a name."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    functions = (t.get("function") for t in tools if isinstance(t, dict))
    return [f for f in functions if isinstance(f, dict) and isinstance(f.get("name"), str)]


def named_choice(body: Mapping[str, Any]) -> str | None:
    """The function name that `tool_choice` forces, if it names one."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        return name if isinstance(name, str) else None
    return None


def example_value(schema: Any) -> Any:
    """A value that fits `schema`: its first `enum` member, else one per `type`."""
    if not isinstance(schema, dict):
        return "example"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "null":
        return None
    if kind == "array":
        return []
    if kind == "object":
        return example_arguments(schema)
    return _EXAMPLES.get(kind, "example") if isinstance(kind, str) else "example"


def example_arguments(parameters: Any) -> JSON:
    """One example value for each property of a function's `parameters` schema."""
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(properties, dict):
        return {}
    return {name: example_value(schema) for name, schema in properties.items()}


def _ends_with_user(messages: Any) -> bool:
    """Whether the last turn is the user's, system turns after it aside (Claude Code puts a
    `system` turn with its environment after the user's)."""
    if not isinstance(messages, list):
        return False
    turns = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
    return bool(turns) and isinstance(turns[-1], dict) and turns[-1].get("role") == "user"


def tool_call(body: Mapping[str, Any], call_id: str) -> ToolCall | None:
    """The call the fake makes for `body`, or None when it should answer in text."""
    functions = offered_functions(body)
    if not functions or body.get("tool_choice") == "none":
        return None
    if not _ends_with_user(body.get("messages")):
        return None
    wanted = named_choice(body)
    function = next((f for f in functions if f["name"] == wanted), functions[0])
    arguments = example_arguments(function.get("parameters"))
    return ToolCall(call_id, function["name"], msgspec.json.encode(arguments).decode())
