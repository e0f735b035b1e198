"""The fake's answer: deterministic, readable text made from the request, and token estimates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SNIPPET_CHARS = 60
FILLER = "This answer comes from a fake upstream, word by word, so tests can check every token."
_FILLER_WORDS = tuple(FILLER.split())
# What a reasoning model "thinks" before it answers, one token a word.
THOUGHT = "The user wants a reply; a short and friendly one will do."


def content_text(content: Any) -> str:
    """The text of a message's `content`: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = (p.get("text") for p in content if isinstance(p, dict))
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def last_user_text(messages: Sequence[Any]) -> str:
    """The text of the last `user` message ('' when there is none)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def _words_as_tokens(words: Sequence[str]) -> list[str]:
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _snippet(text: str) -> str:
    return " ".join(text[:SNIPPET_CHARS].split())


def fixed_tokens(text: str) -> list[str]:
    """A set answer as tokens, a word each (as a fake whose models all say one text does)."""
    return _words_as_tokens(text.split())


def answer_tokens(label: str, model: str, messages: Sequence[Any], count: int) -> list[str]:
    """The first `count` tokens of the answer; each token is a word with its leading space.

    The answer greets, quotes the start of the last user message (or, in its first sentence,
    of the tool result when the conversation ends with one, system turns aside), then cycles
    through `FILLER`.
    """
    greeting = f"Hello from the fake {label} (model {model})"
    turns = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
    last = turns[-1] if turns else None
    if isinstance(last, dict) and last.get("role") == "tool":
        said = _snippet(content_text(last.get("content")))
        words = f"{greeting}; the tool said: {said}.".split()
    else:
        words = f"{greeting}. You said: {_snippet(last_user_text(messages))}.".split()
    while len(words) < count:
        words.extend(_FILLER_WORDS[: count - len(words)])
    return _words_as_tokens(words[:count])


def thought_tokens() -> list[str]:
    """The reasoning a reasoning model shows before its answer, one word a token."""
    return _words_as_tokens(THOUGHT.split())


def prompt_tokens(messages: Sequence[Any]) -> int:
    """A cheap prompt-size estimate: 4 characters a token, plus 4 tokens of overhead a message."""
    chars = sum(len(content_text(m.get("content"))) for m in messages if isinstance(m, dict))
    return chars // 4 + 4 * len(messages)
