"""What each fake provider is: paths, models, free-tier limits, request rules, wire shapes.

A `Flavor` is data plus a `WireShape`: the module of small pure functions (`groq_wire`,
`cerebras_wire`, `openai_wire`) that render chunks, completions, errors and rate-limit headers
the way that provider does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from . import cerebras_wire, groq_wire, openai_wire
from .rules import RequestRules, Violation
from .wire import JSON, ErrorSpec, RateSnapshot, Reply, ToolCall, Usage

# Context window quoted in context-length messages (free-tier gpt-oss-120b, reference C.2).
_CONTEXT_WINDOW = 65_536


class WireShape(Protocol):
    """The pure functions and tables that render one provider's wire format."""

    STATIC_HEADERS: dict[str, str]
    ERRORS: dict[int, ErrorSpec]
    CODED_ERRORS: dict[str, ErrorSpec]

    def duration(self, seconds: float, /) -> str: ...
    def rate_headers(self, snap: RateSnapshot, /) -> dict[str, str]: ...
    def invalid(self, message: str, param: str | None, /) -> ErrorSpec: ...
    def error_body(self, spec: ErrorSpec, /) -> JSON: ...
    def stream_error(self, spec: ErrorSpec, /) -> JSON: ...
    def role_chunk(self, reply: Reply, /) -> JSON: ...
    def delta_chunk(self, reply: Reply, delta: JSON, /) -> JSON: ...
    def reasoning_delta(self, model: str, text: str, /) -> JSON: ...
    def tool_call_deltas(self, call: ToolCall, /) -> list[JSON]: ...
    def finish_chunks(
        self, reply: Reply, usage: Usage, finish_reason: str, include_usage: bool, /
    ) -> list[JSON]: ...
    def completion(
        self, reply: Reply, message: JSON, usage: Usage, finish_reason: str, /
    ) -> JSON: ...
    def model_entry(self, model_id: str, created: int, /) -> JSON: ...


@dataclass(frozen=True)
class Flavor:
    """One provider as a fake plays it. `withdrawn` maps a retired model to its error code.

    `requests_limit` counts per `request_window` seconds, `tokens_limit` per minute; with both
    None the provider publishes no limits, so the fake sends no rate-limit headers.
    """

    name: str
    label: str
    chat_path: str
    models_path: str
    models: tuple[str, ...]
    withdrawn: Mapping[str, str] = field(hash=False)
    requests_limit: int | None
    tokens_limit: int | None
    wire: WireShape = field(hash=False)
    warm_path: str | None = None
    request_window: float = 86_400.0
    rules: RequestRules = field(default_factory=RequestRules)
    embeddings_path: str | None = None
    """Where it serves embeddings (`fakes.embeddings`); None: it has none."""
    embedding_models: tuple[str, ...] = ()
    feature_extraction_path: str | None = None
    """Where it serves Hugging Face's feature-extraction pipeline (`{model}` in the path)."""

    @property
    def limited(self) -> bool:
        return self.requests_limit is not None or self.tokens_limit is not None

    def mounted(
        self,
        chat_path: str | None = None,
        models_path: str | None = None,
        embeddings_path: str | None = None,
    ) -> Flavor:
        """This flavor with its endpoints elsewhere (an OpenRouter-like `/api/v1/...`)."""
        return replace(
            self,
            chat_path=chat_path or self.chat_path,
            models_path=models_path or self.models_path,
            embeddings_path=embeddings_path or self.embeddings_path,
        )

    def error(
        self,
        status: int | None = None,
        *,
        code: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        **fields: object,
    ) -> ErrorSpec:
        """The provider's error for `status` or `code`; a known code brings its own wording.

        `fields` fill the message template: `model`, `requested`, `method`, `path`.
        """
        spec = self.wire.CODED_ERRORS.get(code) if code else None
        if spec is None:
            if status is None:
                raise ValueError(f"{self.name}: unknown error code {code!r} and no status")
            spec = self.wire.ERRORS.get(status) or _generic_error(status)
            if code:
                spec = replace(spec, code=code)
        if status is not None and status != spec.status:
            spec = replace(spec, status=status)
        if message is None:
            values: dict[str, object] = {
                "model": "",
                "requested": 1,
                "method": "POST",
                "path": self.chat_path,
                "limit": self.tokens_limit or 0,
                "context": _CONTEXT_WINDOW,
                "retry": self.wire.duration(1.0 if retry_after is None else retry_after),
            }
            values.update(fields)
            message = spec.message.format_map(values)
        return replace(spec, message=message)

    def refusal(self, violation: Violation) -> ErrorSpec:
        """The 400 this provider answers to a request that breaks one of its `rules`."""
        return self.wire.invalid(violation.message, violation.param)

    def error_body(self, spec: ErrorSpec) -> JSON:
        """The HTTP error body for `spec`, in this provider's shape."""
        return self.wire.error_body(spec)

    def stream_error(self, spec: ErrorSpec) -> JSON:
        """The `data:` payload this provider sends when a started stream fails."""
        return self.wire.stream_error(spec)

    def rate_headers(self, snap: RateSnapshot) -> dict[str, str]:
        """`x-ratelimit-*` headers in this provider's names and formats (none if unlimited)."""
        return self.wire.rate_headers(snap) if self.limited else {}


def _generic_error(status: int) -> ErrorSpec:
    kind = "internal_server_error" if status >= 500 else "invalid_request_error"
    return ErrorSpec(status, kind, None, None, f"HTTP {status}")


GROQ = Flavor(
    name="groq",
    label="Groq",
    chat_path="/openai/v1/chat/completions",
    models_path="/openai/v1/models",
    models=(
        "openai/gpt-oss-120b",
        "openai/gpt-oss-20b",
        "llama-3.1-8b-instant",
        "qwen/qwen3.6-27b",
    ),
    withdrawn={"moonshotai/kimi-k2-instruct-0905": "model_decommissioned"},
    # Free plan, gpt-oss-120b row of Groq's "Rate Limits" docs as of 2026-08-08: 1000 RPD, 8000 TPM.
    requests_limit=1_000,
    tokens_limit=8_000,
    wire=groq_wire,
    rules=RequestRules(
        temperature_max=2.0,
        max_stop=4,
        only_one_choice=True,
        unsupported=("logprobs", "logit_bias", "top_logprobs"),
        message_names=False,
        reasoning_formats=("hidden", "raw", "parsed"),
        include_reasoning=True,
    ),
)

CEREBRAS = Flavor(
    name="cerebras",
    label="Cerebras",
    chat_path="/v1/chat/completions",
    models_path="/v1/models",
    models=("gpt-oss-120b", "gemma-4-31b", "llama3.1-8b"),
    withdrawn={"zai-glm-4.6": "model_not_found", "zai-glm-4.7": "model_not_found"},
    # Free tier, gpt-oss-120b row of Cerebras's rate-limit docs as of 2025-12-17 (that tier
    # ended 2026-08-17): 14400 requests a day, 60000 tokens a minute.
    requests_limit=14_400,
    tokens_limit=60_000,
    wire=cerebras_wire,
    warm_path="/v1/tcp_warming",
    rules=RequestRules(
        temperature_max=1.5,
        top_logprobs_max=20,
        reasoning_formats=("none", "parsed", "text_parsed", "raw", "hidden"),
    ),
)

# Any OpenAI-compatible provider (Mistral, OpenRouter, Gemini's compat endpoint...): OpenAI's
# own behaviour. No published limits; `dataclasses.replace` one in to get rate-limit headers.
OPENAI = Flavor(
    name="openai",
    label="OpenAI-compatible",
    chat_path="/v1/chat/completions",
    models_path="/v1/models",
    models=("generic-large", "generic-small"),
    withdrawn={},
    requests_limit=None,
    tokens_limit=None,
    wire=openai_wire,
    request_window=60.0,
    rules=RequestRules(temperature_max=2.0, max_stop=4),
    embeddings_path="/v1/embeddings",
    embedding_models=("generic-embed",),
)

FLAVORS: dict[str, Flavor] = {f.name: f for f in (GROQ, CEREBRAS, OPENAI)}
