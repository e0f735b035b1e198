"""Token estimates for when an upstream reports no usage (and, later, for budgeting).

About four characters a token for English text with the common BPE tokenizers; a few tokens
of framing per message. An estimate, never presented as a measured count.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from .schemas import Message, Usage

_PER_MESSAGE = 4


def text_tokens(text: str) -> int:
    """Estimated tokens in `text`."""
    return (len(text) + 3) // 4


def prompt_tokens(messages: Iterable[Message]) -> int:
    """Estimated prompt tokens of `messages`, content parts and tool calls included."""
    total = 0
    for message in messages:
        content = message.content
        if isinstance(content, str):
            total += text_tokens(content)
        elif content is not None or message.tool_calls:
            total += text_tokens(msgspec.json.encode([content, message.tool_calls]).decode())
        total += _PER_MESSAGE
    return total


def estimated_usage(messages: Iterable[Message], completion_chars: int) -> Usage:
    """A `Usage` from estimates, for an answer of `completion_chars` characters."""
    prompt = prompt_tokens(messages)
    completion = (completion_chars + 3) // 4
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
