"""Stickiness: the member that served a conversation, so that its next turn goes back there
while that member has room (a provider's prompt cache is kept per key and per model).

A conversation is named by a digest of its route and its messages up to its first user
turn: every later turn of it starts the same way. Conversations that begin alike share their
prompt's prefix too, so sending them to one member is what a prompt cache wants as well.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import msgspec

from .schemas import Message

MAX_CONVERSATIONS = 10_000
"""How many conversations are remembered (the least recently served are forgotten)."""

_encode = msgspec.json.Encoder().encode


def conversation(route: str, messages: tuple[Message, ...]) -> str:
    """The digest naming the conversation `messages` belong to on `route`."""
    first = next((i for i, m in enumerate(messages) if m.role == "user"), len(messages) - 1)
    digest = hashlib.blake2b(route.encode(), digest_size=16)
    digest.update(_encode(messages[: first + 1]))
    return digest.hexdigest()


class Affinity:
    """Conversation digest -> the member (`Deployment.member`) that last served it, bounded;
    this process's own (each process of `--workers` learns its conversations itself)."""

    __slots__ = ("_members", "_size")

    def __init__(self, size: int = MAX_CONVERSATIONS) -> None:
        self._members: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def member(self, digest: str) -> str | None:
        """The member that served the conversation last, None if none is remembered."""
        return self._members.get(digest)

    def served(self, digest: str, member: str) -> None:
        """`member` served the conversation: remember it, forgetting the oldest past the bound."""
        members = self._members
        members[digest] = member
        members.move_to_end(digest)
        if len(members) > self._size:
            members.popitem(last=False)

    def __len__(self) -> int:
        return len(self._members)
