"""Demo mode: fake Groq and Cerebras upstreams in this process, with providers pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from .config import preset_settings
from .fakes import FakeUpstream
from .providers import CEREBRAS, GROQ
from .settings import Settings

# A readable pace for a person watching the stream: about 40 tokens a second.
DEMO_TOKEN_DELAY = 0.025
DEMO_ANSWER_TOKENS = 60


@asynccontextmanager
async def demo_upstreams(settings: Settings) -> AsyncIterator[Settings]:
    """Start one fake per preset; yield `settings` with every provider pointed at its fake."""
    async with AsyncExitStack() as stack:
        providers = []
        for spec in (GROQ, CEREBRAS):
            key = f"demo-{spec.name}-key"
            fake = FakeUpstream(
                spec.name,
                api_key=key,
                token_delay=DEMO_TOKEN_DELAY,
                answer_tokens=DEMO_ANSWER_TOKENS,
            )
            await stack.enter_async_context(fake)
            providers.append(
                preset_settings(spec, {str(spec.key_env): key}, base_url=fake.base_url)
            )
        # Fake answers must not mix into a real usage ledger: the demo keeps its own in memory.
        yield settings.with_overrides(providers=tuple(providers), demo=True, ledger="")
