"""Tool calling: when the fake calls a function instead of answering, which one, with what.

The fake calls a tool whenever a request offers `tools`, `tool_choice` is not `"none"` and the
conversation ends with a user turn (system turns after it aside); after a `tool` result it
answers in text again. Arguments are an instance of the function's JSON schema
(`schema_values`), so they parse and validate.

A test (or a person trying an agent against the demo) can tell the fake which call to make: a
line `fake-tool-call: NAME {JSON arguments}` in the last user turn makes it call the offered
function NAME with those arguments, so an agent's tool can do real work (run a command, write
a given file) instead of receiving example values; `fake-tool-call: none` makes it answer in
text although tools are offered (agents such as Codex CLI always offer them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .schema_values import example_object
from .wire import JSON, ToolCall


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


def example_arguments(parameters: Any) -> JSON:
    """Arguments that are an instance of a function's `parameters` schema."""
    return example_object(parameters)


DIRECTIVE = "fake-tool-call:"


def _last_user_turn(messages: Any) -> JSON | None:
    """The last turn if it is the user's, system turns after it aside (Claude Code puts a
    `system` turn with its environment after the user's); else None."""
    if not isinstance(messages, list):
        return None
    turns = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
    last = turns[-1] if turns else None
    return last if isinstance(last, dict) and last.get("role") == "user" else None


def _text(content: Any) -> str:
    """A message's text: the string, or its `text` parts joined by newlines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = (p.get("text") for p in content if isinstance(p, dict))
    return "\n".join(p for p in parts if isinstance(p, str))


def told_call(turn: JSON) -> tuple[str, str] | None:
    """The (name, arguments) a `fake-tool-call:` line of the turn asks for, if one does and
    its arguments are a JSON object; ("none", "") for `fake-tool-call: none`."""
    for line in _text(turn.get("content")).splitlines():
        line = line.strip()
        if not line.startswith(DIRECTIVE):
            continue
        name, _, arguments = line.removeprefix(DIRECTIVE).strip().partition(" ")
        if name == "none":
            return name, ""
        try:
            decoded = msgspec.json.decode(arguments or "{}")
        except msgspec.DecodeError:
            continue
        if isinstance(decoded, dict):
            return name, msgspec.json.encode(decoded).decode()
    return None


def tool_call(body: Mapping[str, Any], call_id: str) -> ToolCall | None:
    """The call the fake makes for `body`, or None when it should answer in text."""
    functions = offered_functions(body)
    if not functions or body.get("tool_choice") == "none":
        return None
    turn = _last_user_turn(body.get("messages"))
    if turn is None:
        return None
    wanted = named_choice(body)
    told = told_call(turn)
    if told is not None and told[0] == "none" and body.get("tool_choice") in (None, "auto"):
        return None
    offered = told is not None and any(f["name"] == told[0] for f in functions)
    if told is not None and offered and wanted in (None, told[0]):
        return ToolCall(call_id, *told)
    function = next((f for f in functions if f["name"] == wanted), functions[0])
    arguments = example_arguments(function.get("parameters"))
    return ToolCall(call_id, function["name"], msgspec.json.encode(arguments).decode())
