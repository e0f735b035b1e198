"""Built-in providers as data: where they live, which variables configure them, their defaults.

Facts as of the reference notes dated 2026-09 (shared/reference/providers.md): the original
bun-ai-api models were withdrawn upstream (Groq `moonshotai/kimi-k2-instruct-0905` on 2026-04-15,
Cerebras `zai-glm-4.6` on 2026-01-20), so the defaults are current models.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What the gateway knows about an OpenAI-compatible provider before any configuration."""

    name: str
    label: str
    env_prefix: str
    base_url: str
    """Server root, with the same meaning as the provider's official SDK `base_url`."""
    chat_path: str
    """Appended to `base_url` to reach chat completions."""
    default_model: str
    default_max_tokens: int
    """Completion-token cap sent with every request unless configured otherwise."""

    @property
    def key_env(self) -> str:
        """The environment variable holding the API key; the provider is active when it is set."""
        return f"{self.env_prefix}_API_KEY"


GROQ = ProviderSpec(
    name="groq",
    label="Groq",
    env_prefix="GROQ",
    base_url="https://api.groq.com",
    chat_path="/openai/v1/chat/completions",
    # Groq's suggested replacement for the original's kimi-k2-instruct-0905 (reference, 2026-08).
    default_model="openai/gpt-oss-120b",
    default_max_tokens=4096,
)

CEREBRAS = ProviderSpec(
    name="cerebras",
    label="Cerebras",
    env_prefix="CEREBRAS",
    base_url="https://api.cerebras.ai",
    chat_path="/v1/chat/completions",
    # In Cerebras's public catalogue on 2026-08-27; zai-glm-4.6 and 4.7 are deprecated.
    default_model="gpt-oss-120b",
    # The original asked for 40,960. Cerebras reserves the cap against its per-minute token
    # budget before running a request (30,000 TPM on the trial tier, 2026-07-18), so 40,960
    # would be refused outright there; 8,192 leaves room for several requests a minute.
    default_max_tokens=8192,
)

PRESETS: tuple[ProviderSpec, ...] = (GROQ, CEREBRAS)
"""Built-in providers in round-robin order (the original's: Groq, then Cerebras)."""
