"""Built-in providers as data: where they live, which variables configure them, what they take.

Facts from the reference notes (shared/reference/providers.md), whose newest sources are dated
2026-09; each preset's `note` dates its free-tier facts. The free-tier landscape moves: check
a provider's own pages before relying on a number here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..limits import DAY, HOUR, MINUTE, MONTH, Kind, Limit, Source

RATES: Mapping[str, tuple[Kind, float]] = {
    "rpm": ("requests", MINUTE),
    "rph": ("requests", HOUR),
    "rpd": ("requests", DAY),
    "rpmonth": ("requests", MONTH),
    "tpm": ("tokens", MINUTE),
    "tph": ("tokens", HOUR),
    "tpd": ("tokens", DAY),
    "tpmonth": ("tokens", MONTH),
}
"""The usual abbreviations of limits (requests/tokens per minute, hour, day, month); the
config file's model entries take the same names."""


def rates(source: Source = "built-in", /, **given: int | None) -> tuple[Limit, ...]:
    """Limits from the abbreviations in `RATES` (`rates(rpm=30, tpd=200_000)`): the presets'
    guesses about a free tier, or `rates("configured", ...)`."""
    unknown = set(given) - set(RATES)
    if unknown:
        raise TypeError(f"unknown rate names: {sorted(unknown)}")
    return tuple(Limit(*RATES[name], n, source) for name in RATES if (n := given.get(name)))


LOCAL_KEY = "local"
"""The key sent to a server that needs none (clients must send one): not a secret."""

SAMPLING = frozenset({"temperature", "top_p", "stop", "seed", "user"})
PENALTIES = frozenset({"frequency_penalty", "presence_penalty"})
TOOLS = frozenset({"tools", "tool_choice", "parallel_tool_calls", "response_format"})
OPENAI_PARAMS = SAMPLING | PENALTIES | TOOLS
"""What a typical OpenAI-compatible endpoint takes."""


@dataclass(frozen=True, slots=True)
class Prefill:
    """How a provider is asked to continue a partial answer given as the final assistant
    message (mid-stream continuation, see `ai_api.continuation`)."""

    name: str
    message: Mapping[str, object] = field(default_factory=dict)
    """Fields set on that final assistant message (Mistral's `prefix: true`)."""
    body: Mapping[str, object] = field(default_factory=dict)
    """Top-level fields of the request (vLLM's `continue_final_message`)."""
    echoes: bool = False
    """The answer repeats the partial answer before continuing it (Mistral's does)."""


TRAILING = Prefill("trailing")
"""Most OpenAI-compatible servers continue a trailing assistant message as it is."""
PREFILLS: Mapping[str, Prefill] = {
    p.name: p
    for p in (
        TRAILING,
        Prefill("mistral", message={"prefix": True}, echoes=True),
        Prefill("vllm", body={"continue_final_message": True, "add_generation_prompt": False}),
    )
}
"""The prefill dialects by name, as the config file names them (`none`: not known to take one)."""


@dataclass(frozen=True, slots=True)
class Embeddings:
    """What a provider offers at its OpenAI-style embeddings endpoint (`POST /v1/embeddings`).

    Facts from shared/reference/apis.md section 6.2 (written 2026-12-02); `note` dates them.
    """

    models: tuple[str, ...]
    """Its embedding models, routable as `provider/model`; none for a local server, where
    `provider/<any name>` asks for the model loaded under that name."""
    path: str = "/embeddings"
    """Appended to the provider's base URL; `{model}` stands for the model's name."""
    from_origin: bool = False
    """`path` is appended to the base URL's origin (scheme, host, port) instead."""
    dialect: str = "openai"
    """`openai`: OpenAI's request and answer; `feature-extraction`: Hugging Face's
    (`{"inputs": [...]}` in, bare arrays of floats out), put into OpenAI's shape here."""
    dimensions_field: str | None = None
    """Its name for OpenAI's `dimensions`; None: not known to take one (a request with
    `dimensions` skips it)."""
    max_inputs: int = 2048
    """The most inputs one request may hold."""
    defaults: Mapping[str, object] = field(default_factory=dict)
    """Fields sent unless the client sets them (NVIDIA's retrieval models need `input_type`)."""
    extra: frozenset[str] = frozenset()
    """Fields of its own a client may send (as the openai SDK's `extra_body`), passed on."""
    limits: Mapping[str, tuple[Limit, ...]] | None = None
    """Free-tier limits by model (`*`: any other); None: the chat models' (`limits_for`)."""
    note: str = ""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What the gateway knows about an OpenAI-compatible provider before any configuration."""

    name: str
    label: str
    env_prefix: str
    """`<prefix>_BASE_URL`, `<prefix>_MODEL`, `<prefix>_MAX_TOKENS` configure it."""
    key_env: str | None
    """The variable holding the API key; the provider is active when it is set. None: local."""
    base_url: str
    """Where `chat_path` is appended; for Groq and Cerebras, the official SDK's `base_url`."""
    chat_path: str
    default_model: str | None
    """None for local servers, whose model the user must name (`<prefix>_MODEL`)."""
    models: tuple[str, ...] = ()
    """Other models known to be served, routable as `name/model`."""
    default_max_tokens: int = 4096
    """Completion-token cap sent with every request unless configured otherwise."""
    params: frozenset[str] = OPENAI_PARAMS
    """Optional OpenAI request fields it takes (see `ai_api.params` for the rest)."""
    renames: Mapping[str, str] = field(default_factory=dict)
    """OpenAI field name -> this provider's name for it."""
    reasoning_formats: frozenset[str] = frozenset()
    """The `reasoning_format` values it documents; another is dropped for it (empty: any)."""
    max_temperature: float = 2.0
    max_tokens_field: str = "max_completion_tokens"
    stream_usage: bool = True
    """Whether it takes `stream_options.include_usage` (else usage may be missing)."""
    message_names: bool = True
    """Whether it takes `messages[].name` (else the names are dropped for it)."""
    rate_style: str = "none"
    """Its rate-limit header dialect (see `ai_api.ratelimits`)."""
    limits: Mapping[str, tuple[Limit, ...]] = field(default_factory=dict)
    """Free-tier limits by model (`*`: any other model), as of `note`'s date."""
    contexts: Mapping[str, int] = field(default_factory=dict)
    """Context window in tokens by model, where known: a request too long for one member
    goes to a member with a larger window."""
    images: Mapping[str, bool] = field(default_factory=dict)
    """Whether a model takes image input, where known: a request with images skips a model
    known not to (an unknown one is tried: its answer is the evidence)."""
    account_wide: bool = False
    """Whether the limits bind the whole account rather than each model."""
    charges_cap: bool = False
    """Whether it charges a request's whole completion cap against its token windows before
    running it (else a request is reserved at the completion its answers are expected to
    cost, and settled to what it really cost)."""
    prefill: Prefill | None = TRAILING
    """How it continues a partial answer; None: not known to, so a continuation there asks
    for the whole answer again and keeps it only if it begins with the part already sent."""
    embeddings: Embeddings | None = None
    """Its embeddings endpoint, if it has one."""
    catalogue: bool = True
    """Whether its `GET …/models` (beside its chat path) lists every chat model it serves, by
    the names requests use: then a configured model missing from it is taken as withdrawn
    (`ai_api.catalogue`). False where no such list is documented, or names differ."""
    note: str = ""

    def limits_for(self, model: str) -> tuple[Limit, ...]:
        """The built-in limits of `model` (the `*` entry for a model not listed)."""
        return self.limits.get(model) or self.limits.get("*", ())

    def embedding_limits(self, model: str) -> tuple[Limit, ...]:
        """The built-in limits of the embedding model `model`."""
        table = self.embeddings.limits if self.embeddings is not None else None
        if table is None:
            return self.limits_for(model)
        return table.get(model, table.get("*", ()))

    @property
    def local(self) -> bool:
        """A server on the user's machine: no key, active once a model is named."""
        return self.key_env is None


REASONING = frozenset({"reasoning_effort", "reasoning_format", "include_reasoning"})

GROQ = ProviderSpec(
    name="groq",
    label="Groq",
    env_prefix="GROQ",
    key_env="GROQ_API_KEY",
    base_url="https://api.groq.com",
    chat_path="/openai/v1/chat/completions",
    # Groq's suggested replacement for the original's kimi-k2-instruct-0905 (withdrawn 2026-04-15).
    default_model="openai/gpt-oss-120b",
    models=("openai/gpt-oss-20b", "llama-3.1-8b-instant", "qwen/qwen3.6-27b"),
    default_max_tokens=4096,
    params=OPENAI_PARAMS - PENALTIES | REASONING,
    reasoning_formats=frozenset({"parsed", "raw", "hidden"}),
    # "`name` in messages is not supported" (400), per its OpenAI-compatibility page.
    message_names=False,
    rate_style="groq",
    limits={
        "openai/gpt-oss-120b": rates(rpm=30, rpd=1000, tpm=8000, tpd=200_000),
        "openai/gpt-oss-20b": rates(rpm=30, rpd=1000, tpm=8000, tpd=200_000),
        "qwen/qwen3.6-27b": rates(rpm=30, rpd=1000, tpm=8000, tpd=200_000),
        "llama-3.1-8b-instant": rates(rpm=30, rpd=14_400, tpm=6000, tpd=500_000),
        "*": rates(rpm=30, rpd=1000, tpm=6000),
    },
    contexts={"openai/gpt-oss-120b": 131_072, "openai/gpt-oss-20b": 131_072},
    # gpt-oss and Llama 3.1 8B are text-only models (their model cards, 2026-12-02).
    images={
        "openai/gpt-oss-120b": False,
        "openai/gpt-oss-20b": False,
        "llama-3.1-8b-instant": False,
    },
    note="free plan: 30 RPM, 1,000 RPD, 8,000 TPM for gpt-oss-120b (Groq docs, 2026-08-08)",
)

CEREBRAS = ProviderSpec(
    name="cerebras",
    label="Cerebras",
    env_prefix="CEREBRAS",
    key_env="CEREBRAS_API_KEY",
    base_url="https://api.cerebras.ai",
    chat_path="/v1/chat/completions",
    # In Cerebras's public catalogue on 2026-08-27; zai-glm-4.6 (the original's) and 4.7 are gone.
    default_model="gpt-oss-120b",
    models=("gemma-4-31b", "llama3.1-8b"),
    # The original asked for 40,960. Cerebras reserves the cap against its per-minute token
    # budget before running a request (30,000 TPM on the trial tier, 2026-07-18), so 40,960
    # would be refused outright there; 8,192 leaves room for several requests a minute.
    default_max_tokens=8192,
    charges_cap=True,
    params=OPENAI_PARAMS | {"reasoning_effort", "reasoning_format"},
    reasoning_formats=frozenset({"none", "parsed", "text_parsed", "raw", "hidden"}),
    max_temperature=1.5,
    rate_style="cerebras",
    limits={
        # The trial tier's limits (api-evangelist copy of Cerebras docs, 2026-07-18).
        "gpt-oss-120b": rates(rpm=5, tpm=30_000, tph=1_000_000, tpd=1_000_000),
        "gemma-4-31b": rates(rpm=5, tpm=30_000, tph=1_000_000, tpd=1_000_000),
        "*": rates(rpm=30, rph=900, rpd=14_400, tpm=60_000, tph=1_000_000, tpd=1_000_000),
    },
    # Smaller than the paid tiers' 131K (neurolink docs, live /v1/models, 2026-08-27).
    contexts={"gpt-oss-120b": 65_536, "gemma-4-31b": 65_536},
    # gemma-4-31b takes images (changelog, 2026-06-29); gpt-oss and Llama 3.1 8B are
    # text-only (their model cards, 2026-12-02).
    images={"gpt-oss-120b": False, "llama3.1-8b": False, "gemma-4-31b": True},
    note="free tier ended 2026-08-17: one-time credit, then HTTP 402 (changelog, 2026-07-16)",
)

GEMINI = ProviderSpec(
    name="gemini",
    label="Google Gemini",
    env_prefix="GEMINI",
    key_env="GEMINI_API_KEY",
    base_url="https://generativelanguage.googleapis.com/v1beta/openai",
    chat_path="/chat/completions",
    default_model="gemini-2.5-flash",
    models=("gemini-3-flash", "gemini-3.1-flash-lite", "gemini-2.5-flash-lite", "gemma-3-27b-it"),
    params=SAMPLING - {"user"} | TOOLS | {"reasoning_effort"},
    limits={
        "gemini-2.5-flash": rates(rpm=5, rpd=20, tpm=250_000),
        "gemini-3-flash": rates(rpm=5, rpd=20, tpm=250_000),
        "gemini-3.1-flash-lite": rates(rpm=15, rpd=500, tpm=250_000),
        "gemini-2.5-flash-lite": rates(rpm=10, rpd=20, tpm=250_000),
        "gemma-3-27b-it": rates(rpm=30, rpd=14_400, tpm=15_000),
        "*": rates(rpm=5, rpd=20, tpm=250_000),
    },
    embeddings=Embeddings(
        # text-embedding-004 was shut down 2026-01-14; gemini-embedding-2 is a preview.
        models=("gemini-embedding-001", "gemini-embedding-2"),
        # Its free embedding quota is not published (one report of a zero quota): none guessed.
        limits={"*": ()},
        note="gemini-embedding-001: 3072 dims, 2048 input tokens (Gemini docs, 2026-04-22)",
    ),
    note="free: 5 RPM, 20 RPD for 2.5 Flash; no rate-limit headers (cheahjs list, 2026-07-18)",
)

OPENROUTER = ProviderSpec(
    name="openrouter",
    label="OpenRouter",
    env_prefix="OPENROUTER",
    key_env="OPENROUTER_API_KEY",
    base_url="https://openrouter.ai/api/v1",
    chat_path="/chat/completions",
    default_model="openai/gpt-oss-120b:free",
    models=("meta-llama/llama-3.3-70b-instruct:free",),
    # top_k: in OpenRouter's sampling parameters (ignored by OpenAI's models) (docs, 2026-12-02)
    params=OPENAI_PARAMS | {"reasoning_effort", "top_k"},
    rate_style="openrouter",
    limits={"*": rates(rpm=20, rpd=50)},
    account_wide=True,
    note=":free models: 20 RPM, 50 RPD account-wide (1,000 with 10 credits) (docs, 2026-10-17)",
)

MISTRAL = ProviderSpec(
    name="mistral",
    label="Mistral",
    env_prefix="MISTRAL",
    key_env="MISTRAL_API_KEY",
    base_url="https://api.mistral.ai/v1",
    chat_path="/chat/completions",
    default_model="mistral-small-latest",
    models=("mistral-medium-latest", "codestral-latest"),
    # OpenAI-like, not identical: `random_seed`, `max_tokens`, no `user`.
    params=OPENAI_PARAMS - {"user"},
    renames={"seed": "random_seed"},
    max_tokens_field="max_tokens",
    stream_usage=False,
    rate_style="mistral",
    prefill=PREFILLS["mistral"],
    limits={"*": rates(rpm=60, tpm=500_000, tpmonth=1_000_000_000)},
    embeddings=Embeddings(
        models=("mistral-embed", "codestral-embed"),
        dimensions_field="output_dimension",
        extra=frozenset({"output_dtype"}),
        note="mistral-embed: 1024 dims; codestral-embed up to 3072 (Mistral docs, 2026-07-18)",
    ),
    note="Experiment plan: 1 req/s, 500,000 TPM, 1B tokens/month (community, 2026-07-18)",
)

NVIDIA = ProviderSpec(
    name="nvidia",
    label="NVIDIA NIM",
    env_prefix="NVIDIA",
    key_env="NVIDIA_API_KEY",
    base_url="https://integrate.api.nvidia.com/v1",
    chat_path="/chat/completions",
    default_model="meta/llama-3.3-70b-instruct",
    max_tokens_field="max_tokens",
    limits={"*": rates(rpm=40)},
    account_wide=True,
    embeddings=Embeddings(
        models=(
            "nvidia/llama-nemotron-embed-1b-v2",
            "nvidia/nv-embedqa-e5-v5",
            "nvidia/nemotron-3-embed-1b",
        ),
        # Its retrieval models refuse a request without `input_type` (query or passage).
        defaults={"input_type": "query"},
        extra=frozenset({"input_type", "truncate"}),
        note="retrieval models need input_type; the catalogue churns (integration docs, 2026)",
    ),
    note="about 40 RPM per account; no rate-limit headers (cheahjs list, 2026-07-18)",
)

SAMBANOVA = ProviderSpec(
    name="sambanova",
    label="SambaNova",
    env_prefix="SAMBANOVA",
    key_env="SAMBANOVA_API_KEY",
    base_url="https://api.sambanova.ai/v1",
    chat_path="/chat/completions",
    default_model="Meta-Llama-3.3-70B-Instruct",
    params=OPENAI_PARAMS - PENALTIES,
    max_tokens_field="max_tokens",
    note="free tier without card: per-model RPM/RPD/TPD (docs, 2026)",
)

COHERE = ProviderSpec(
    name="cohere",
    label="Cohere",
    env_prefix="COHERE",
    key_env="CO_API_KEY",
    base_url="https://api.cohere.ai/compatibility/v1",
    chat_path="/chat/completions",
    default_model="command-a-03-2025",
    params=OPENAI_PARAMS - {"user", "parallel_tool_calls"},
    max_tokens_field="max_tokens",
    limits={"*": rates(rpm=20, rpmonth=1000)},
    # Its compatibility API documents no model list (Cohere's own /v1/models is another
    # shape) (compatibility API docs, as of 2026-12-03).
    catalogue=False,
    embeddings=Embeddings(
        models=(
            "embed-v4.0",
            "embed-english-v3.0",
            "embed-multilingual-v3.0",
            "embed-english-light-v3.0",
            "embed-multilingual-light-v3.0",
        ),
        limits={"*": rates(rpmonth=1000)},
        note="trial key: 1,000 calls a month in all; v2 embed models retired 2026-04-04",
    ),
    note="trial key: 20 RPM per chat model, 1,000 calls a month (docs, 2026)",
)

HUGGINGFACE = ProviderSpec(
    name="huggingface",
    label="Hugging Face router",
    env_prefix="HUGGINGFACE",
    key_env="HF_TOKEN",
    base_url="https://router.huggingface.co/v1",
    chat_path="/chat/completions",
    default_model="openai/gpt-oss-120b",
    # Its /v1/models lists models without the `:provider` and `:fastest` suffixes requests may
    # use: a name missing from it is not withdrawn (router docs, as of 2026-12-03).
    catalogue=False,
    embeddings=Embeddings(
        # Not an OpenAI endpoint: the feature-extraction pipeline of hf-inference, per model.
        models=(),
        path="/hf-inference/models/{model}/pipeline/feature-extraction",
        from_origin=True,
        dialect="feature-extraction",
        note="sentence-transformers models such as BAAI/bge-* (integration wiki, 2026)",
    ),
    note="free users: $0.10 of credits a month, then 402 (pricing page, 2026)",
)

CLOUDFLARE = ProviderSpec(
    name="cloudflare",
    label="Cloudflare Workers AI",
    env_prefix="CLOUDFLARE",
    key_env="CLOUDFLARE_API_TOKEN",
    base_url="https://api.cloudflare.com/client/v4/accounts/{CLOUDFLARE_ACCOUNT_ID}/ai/v1",
    chat_path="/chat/completions",
    default_model="@cf/meta/llama-3.3-70b-instruct-fp8-fast",
    # Its models are searched at /ai/models/search, not listed beside the chat path (Workers
    # AI API docs, as of 2026-12-03).
    catalogue=False,
    params=SAMPLING - {"user"} | TOOLS,
    max_tokens_field="max_tokens",
    embeddings=Embeddings(
        models=(
            "@cf/baai/bge-large-en-v1.5",
            "@cf/baai/bge-base-en-v1.5",
            "@cf/baai/bge-small-en-v1.5",
            "@cf/baai/bge-m3",
        ),
        max_inputs=100,
        note="at most 100 texts a request (LlamaIndex integration, 2024-03-31)",
    ),
    note="10,000 neurons a day free (pricing page, 2026-09-20)",
)


def _local(
    name: str,
    label: str,
    prefix: str,
    base_url: str,
    prefill: Prefill = TRAILING,
    params: frozenset[str] = OPENAI_PARAMS,
) -> ProviderSpec:
    return ProviderSpec(
        params=params,
        name=name,
        label=label,
        env_prefix=prefix,
        key_env=None,
        base_url=base_url,
        chat_path="/chat/completions",
        default_model=None,
        max_tokens_field="max_tokens",
        prefill=prefill,
        embeddings=Embeddings(models=(), note="whatever embedding model the server has loaded"),
        # Local servers name models their own way (Ollama lists `llama3.2:latest` and takes
        # `llama3.2`; llama.cpp lists its file and takes any name): their lists are not read.
        catalogue=False,
        note="local server: no limits but your hardware",
    )


OLLAMA = _local("ollama", "Ollama", "OLLAMA", "http://localhost:11434/v1")
LM_STUDIO = _local("lmstudio", "LM Studio", "LMSTUDIO", "http://localhost:1234/v1")
# top_k: one of vLLM's extra sampling parameters of its chat API (docs, 2026-12-02)
VLLM = _local(
    "vllm", "vLLM", "VLLM", "http://localhost:8000/v1", PREFILLS["vllm"], OPENAI_PARAMS | {"top_k"}
)

PRESETS: tuple[ProviderSpec, ...] = (
    GROQ,
    CEREBRAS,
    GEMINI,
    OPENROUTER,
    MISTRAL,
    NVIDIA,
    SAMBANOVA,
    COHERE,
    HUGGINGFACE,
    CLOUDFLARE,
    OLLAMA,
    LM_STUDIO,
    VLLM,
)
"""Built-in providers in default round-robin order (the original's first: Groq, Cerebras)."""

GENERIC = ProviderSpec(
    name="openai",
    label="OpenAI-compatible",
    env_prefix="OPENAI_COMPATIBLE",
    key_env=None,
    base_url="",
    rate_style="openai",
    chat_path="/chat/completions",
    default_model=None,
    embeddings=Embeddings(models=(), dimensions_field="dimensions"),
    catalogue=False,  # an unknown server's list may name its models its own way: opt in
    note="any OpenAI-compatible endpoint declared in the config file",
)
"""The kind `openai` in a config file: an endpoint with no preset, described there."""


def preset(name: str) -> ProviderSpec | None:
    """The built-in spec called `name` (`openai` is the generic one)."""
    if name == GENERIC.name:
        return GENERIC
    return next((spec for spec in PRESETS if spec.name == name), None)
