"""Choosing who answers: deployments (a provider and a model) and the round-robin order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import NoProviders
from .providers import Provider
from .schemas import ChatRequest, Message


@dataclass(frozen=True, slots=True)
class Deployment:
    """A provider serving one upstream model with a completion-token cap."""

    provider: Provider
    model: str
    max_tokens: int

    @property
    def name(self) -> str:
        """The provider's name."""
        return self.provider.name

    def request(self, messages: tuple[Message, ...]) -> ChatRequest:
        """The typed request this deployment sends for `messages`."""
        return ChatRequest(messages=messages, model=self.model, max_tokens=self.max_tokens)


class RoundRobin:
    """Hands out deployments in a fixed cycle, as the original did (Groq, Cerebras, Groq, ...).

    `next()` does not await, so on one event loop concurrent requests each take their own turn.
    """

    __slots__ = ("_deployments", "_turn")

    def __init__(self, deployments: Sequence[Deployment]) -> None:
        self._deployments = tuple(deployments)
        self._turn = 0

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        """Every deployment, in order."""
        return self._deployments

    def next(self) -> Deployment:
        """The deployment whose turn it is."""
        if not self._deployments:
            raise NoProviders("No provider is configured.")
        deployment = self._deployments[self._turn % len(self._deployments)]
        self._turn += 1
        return deployment
