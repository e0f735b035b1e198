"""The optional OpenAI request fields: which pass, which are dropped, which are refused.

Rules, in the order they apply:
1. Refused for every provider (400): `n` other than 1, `logprobs`, `top_logprobs`,
   `logit_bias` — ai-api streams one choice and does not carry log-probabilities.
2. Checked once for every provider (400 when out of range): `temperature` 0-2, `top_p` 0-1,
   at most 4 `stop` sequences, token caps of at least 1.
3. Dropped for every provider: `metadata`, `store`, `service_tier` (billing and storage
   features of one vendor, meaningless through a gateway).
4. Dropped where a provider does not take them (they tune, they do not change what an answer
   is): `user`, `seed`, `frequency_penalty`, `presence_penalty`, `parallel_tool_calls`,
   `reasoning_effort`, `reasoning_format`, `include_reasoning`; and `messages[].name` (a
   speaker's name) for a provider that refuses it (Groq).
5. Required where asked (`temperature`, `top_p`, `stop`, `tools`, `tool_choice`,
   `response_format`, and `top_k`, which only the Anthropic facade takes): a route member
   that does not take one is skipped; if no member can, the request is refused with a 400
   that names the field.
6. Translated: `temperature` is lowered to a provider's maximum (Cerebras 1.5), names are
   renamed (Mistral `random_seed`), and `reasoning_format` wins over `include_reasoning`,
   which Groq refuses together; a `reasoning_format` value a provider does not document
   is dropped for it, like the field itself (Groq takes three values, Cerebras five).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest
from .schemas import CompletionBody

if TYPE_CHECKING:  # the providers' wire format imports these rules: no import back at run time
    from .providers.presets import ProviderSpec

REFUSED = ("logprobs", "top_logprobs", "logit_bias")
RANGES = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}
"""The fields checked against a range (rule 2), with their bounds."""
MAX_STOP = 4
GATEWAY_DROPPED = frozenset({"metadata", "store", "service_tier"})
DROPPABLE = frozenset(
    {
        "user",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "parallel_tool_calls",
        "reasoning_effort",
        "reasoning_format",
        "include_reasoning",
    }
)
OPTIONS = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "reasoning_format",
    "include_reasoning",
    "frequency_penalty",
    "presence_penalty",
)


def options_of(body: CompletionBody) -> dict[str, Any]:
    """The optional fields a client set, validated (rules 1-3); raises `InvalidRequest`."""
    for name in REFUSED:
        if getattr(body, name) not in (None, False):
            raise InvalidRequest(f"`{name}` is not supported by ai-api.", param=name)
    if body.n not in (None, 1):
        raise InvalidRequest("Only `n=1` is supported.", param="n")
    for name, (low, high) in RANGES.items():
        _check_range(getattr(body, name), name, low, high)
    if isinstance(body.stop, list) and len(body.stop) > MAX_STOP:
        raise InvalidRequest(f"`stop` takes at most {MAX_STOP} sequences.", param="stop")
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(body, name)
        if value is not None and value < 1:
            raise InvalidRequest(f"`{name}` must be at least 1.", param=name)
    if body.tool_choice is not None and not body.tools and body.tool_choice != "none":
        raise InvalidRequest("`tool_choice` needs `tools`.", param="tool_choice")
    return {name: value for name in OPTIONS if (value := getattr(body, name)) is not None}


def _check_range(value: float | None, name: str, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise InvalidRequest(f"`{name}` must be between {low:g} and {high:g}.", param=name)


def missing(spec: ProviderSpec, options: Iterable[str]) -> list[str]:
    """The requested fields (rule 5) that `spec` cannot take."""
    return [name for name in options if name not in spec.params and name not in DROPPABLE]


def translate(spec: ProviderSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The fields as `spec` takes them (rules 4 and 6); assumes `missing()` was empty."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name not in spec.params or not _takes_value(spec, name, value):
            continue
        if name == "temperature":
            value = min(value, spec.max_temperature)
        out[spec.renames.get(name, name)] = value
    if "reasoning_format" in out:
        out.pop("include_reasoning", None)
    return out


def _takes_value(spec: ProviderSpec, name: str, value: Any) -> bool:
    """Whether `spec` documents `value` for `name` (only `reasoning_format` has such a list)."""
    if name == "reasoning_format" and spec.reasoning_formats:
        return value in spec.reasoning_formats
    return True
