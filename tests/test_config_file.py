"""The TOML configuration file."""

import pytest

from ai_api.config import load_settings
from ai_api.settings import KNOBS, ConfigError


def load(tmp_path, text, **env):
    path = tmp_path / "ai-api.toml"
    path.write_text(text)
    return load_settings(env, path)


def test_presets_stay_active_and_the_file_adds_and_overrides(tmp_path):
    settings = load(
        tmp_path,
        """
[providers.groq]
models = ["llama-3.1-8b-instant", { name = "openai/gpt-oss-120b", max_tokens = 1000 }]

[providers.box]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1/"
api_key_env = "BOX_KEY"
models = ["qwen3-32b"]
max_tokens = 512

[routes.smart]
strategy = "fallback"
members = ["groq/openai/gpt-oss-120b", "box/qwen3-32b", "cerebras/gpt-oss-120b"]
""",
        GROQ_API_KEY="g",
        CEREBRAS_API_KEY="c",
        BOX_KEY="b",
    )
    groq, cerebras, box = settings.providers
    assert [(m.name, m.max_tokens) for m in groq.models] == [
        ("llama-3.1-8b-instant", 4096),
        ("openai/gpt-oss-120b", 1000),
    ]
    assert cerebras.name == "cerebras"
    assert (box.spec.name, box.base_url, box.model, box.models[0].max_tokens) == (
        "openai",
        "http://127.0.0.1:8000/v1",
        "qwen3-32b",
        512,
    )
    assert box.api_key.reveal() == "b"
    (route,) = settings.routes
    assert (route.name, route.strategy) == ("smart", "fallback")
    assert [m.name for m in route.members] == [
        "groq/openai/gpt-oss-120b",
        "box/qwen3-32b",
        "cerebras/gpt-oss-120b",
    ]
    assert settings.problems == ()


def test_missing_variables_make_providers_inactive_and_are_reported(tmp_path):
    settings = load(
        tmp_path,
        """
[server]
gateway_keys_env = "MY_KEYS"

[providers.mistral]

[routes.r]
members = ["mistral/mistral-small-latest", "groq/openai/gpt-oss-120b"]
""",
        GROQ_API_KEY="g",
    )
    assert [p.name for p in settings.providers] == ["groq"]
    assert [m.name for m in settings.routes[0].members] == ["groq/openai/gpt-oss-120b"]
    assert any("MISTRAL_API_KEY is not set" in p for p in settings.problems)
    assert any("mistral/mistral-small-latest skipped" in p for p in settings.problems)
    assert any("MY_KEYS is not set" in p for p in settings.problems)


def test_gateway_keys_from_file_variable_and_environment(tmp_path):
    settings = load(
        tmp_path,
        '[server]\ngateway_keys_env = "MY_KEYS"\nport = 4000\n',
        MY_KEYS="a, b",
        AI_API_KEYS="c",
    )
    assert [k.secret.reveal() for k in settings.gateway_keys] == ["a", "b", "c"]
    assert [k.name for k in settings.gateway_keys] == ["MY_KEYS", "MY_KEYS", "AI_API_KEYS"]
    assert settings.port == 4000


def test_environment_wins_over_the_file(tmp_path):
    assert load(tmp_path, "[server]\nport = 4000\n", PORT="5000").port == 5000
    loop = "[server]\nevent_loop = 'asyncio'\n"
    assert load(tmp_path, loop).event_loop == "asyncio"
    assert load(tmp_path, loop, AI_API_EVENT_LOOP="UVLOOP").event_loop == "uvloop"


ORIGINS = ("http://a.example", "https://b.example:8443")
SAMPLES = {
    int: ("7", 7),
    float: ("2.5", 2.5),
    str: ("somewhere", "somewhere"),
    tuple: (" , ".join(ORIGINS), ORIGINS),
    bool: ("Off", False),  # every bool knob defaults to true
}


@pytest.mark.parametrize("knob", KNOBS, ids=lambda k: k.name)
def test_every_server_setting_is_read_from_its_variable_and_the_file(tmp_path, knob):
    raw, value = (knob.choices[-1],) * 2 if knob.choices else SAMPLES[knob.kind]
    if knob.upper:
        raw, value = "debug", "DEBUG"
    if knob.kind is int and knob.minimum is not None and value < knob.minimum:
        raw, value = str(int(knob.minimum)), int(knob.minimum)  # the smallest it takes
    assert getattr(load(tmp_path, "", **{knob.env: raw}), knob.name) == value
    if knob.in_file:
        given = {str: repr(raw), tuple: repr(list(ORIGINS)), bool: "false"}.get(knob.kind, raw)
        toml = f"[server]\n{knob.name} = {given}\n"
        assert getattr(load(tmp_path, toml), knob.name) == value


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[server]\nport = -1\n", "port = -1 must be at least 0"),
        ("[server]\nmax_attempts = 0\n", "max_attempts = 0 must be at least 1"),
        ("[server]\nread_timeout = 0.0\n", "read_timeout = 0.0 must be at least 0.001"),
        ("[server]\ndrain_grace = -1.5\n", "drain_grace = -1.5 must be at least 0"),
        ("[server]\nstate_file = 'x'\n", "unknown field `state_file`"),
    ],
)
def test_server_values_in_the_file_are_checked_as_their_variables_are(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load(tmp_path, text)


def test_prefill_dialects_and_continuation_from_the_file(tmp_path):
    text = (
        "[providers.groq]\nprefill = 'none'\n"
        "[providers.box]\nkind = 'openai'\nbase_url = 'http://h'\nmodels = ['m']\n"
        "prefill = 'vllm'\n"
        "[routes.r]\nmembers = ['groq/m', 'box/m']\ncontinuation = false\n"
        "[server]\ncontinuation = 'off'\n"
    )
    settings = load(tmp_path, text, GROQ_API_KEY="g")
    groq, box = settings.providers
    assert groq.spec.prefill is None
    assert box.spec.prefill is not None
    assert box.spec.prefill.name == "vllm"
    assert settings.routes[0].continuation is False
    assert settings.continuation == "off"
    # By default every OpenAI-compatible provider continues a trailing assistant message.
    default = load(tmp_path, "[routes.r]\nmembers = ['groq/m']\n", GROQ_API_KEY="g")
    assert default.providers[0].spec.prefill is not None
    assert default.providers[0].spec.prefill.name == "trailing"
    assert (default.routes[0].continuation, default.continuation) == (True, "on")


def test_disabled_preset(tmp_path):
    settings = load(tmp_path, "[providers.groq]\nenabled = false\n", GROQ_API_KEY="g")
    assert settings.providers == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[providers.groq]\nmodles = []\n", "unknown field `modles`"),
        ("[sever]\n", "unknown field `sever`"),
        ("[routes.r]\nstrategy = 'random'\nmembers = []\n", "strategy"),
        ("[providers.x]\nkind = 'nope'\n", "unknown kind 'nope'"),
        ("[providers.x]\nkind = 'openai'\nmodels = ['m']\n", "needs base_url and models"),
        ("[providers.x]\nkind = 'openai'\nbase_url = 'http://h'\n", "needs base_url and models"),
        ("[routes.r]\nmembers = ['groq']\n", "is not 'provider/model'"),
        ("[routes.r]\nmembers = ['nobody/m']\n", "names no provider"),
        ("[routes.r]\nmembers = ['groq/m', 'groq/m']\n", "listed twice"),
        ("[routes.'a/b']\nmembers = ['groq/m']\n", "may not contain '/'"),
        ("[providers.auto]\n", "may not be 'auto'"),
        ("[server\n", "not valid TOML"),
        ("[providers.groq]\nmodels = 3\n", "[providers.groq]: Expected `array | null`, got `int`"),
        ("[server]\nevent_loop = 'trio'\n", "event_loop"),
        ("[providers.groq]\nprefill = 'maybe'\n", "prefill"),
    ],
)
def test_bad_files_say_what_and_where(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        load(tmp_path, text, GROQ_API_KEY="g")


def test_config_file_from_variable(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 4321\n")
    assert load_settings({"AI_API_CONFIG": str(path)}).port == 4321
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"AI_API_CONFIG": str(tmp_path / "missing.toml")})


def test_aliases_name_a_model_the_gateway_serves(tmp_path):
    settings = load(
        tmp_path,
        """
[routes.smart]
members = ["groq/openai/gpt-oss-120b"]

[aliases]
"claude-sonnet-4-5" = "smart"
"claude-haiku-4-5" = "groq/llama-3.1-8b-instant"
"claude-opus-4-1" = "cerebras/gpt-oss-120b"
""",
        GROQ_API_KEY="g",
    )
    assert settings.aliases == (
        ("claude-sonnet-4-5", "smart"),
        ("claude-haiku-4-5", "groq/llama-3.1-8b-instant"),
    )
    assert settings.problems == (
        "aliases.claude-opus-4-1: 'cerebras/gpt-oss-120b' is not served (provider inactive)",
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[aliases]\nclaude = 'nope'\n", "aliases.claude: 'nope' is not a model name"),
        ("[aliases]\nclaude = 'nobody/m'\n", "aliases.claude: 'nobody/m' is not a model name"),
        ("[aliases]\nauto = 'groq/openai/gpt-oss-120b'\n", "aliases.auto: already a model name"),
        ("[aliases]\nclaude = 3\n", "Expected `str`"),
    ],
)
def test_an_alias_of_nothing_or_over_a_model_name_is_a_config_error(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load(tmp_path, text, GROQ_API_KEY="g")


def test_which_models_take_images_from_the_presets_and_the_file(tmp_path):
    settings = load(
        tmp_path,
        """
[providers.cerebras]
models = ["gpt-oss-120b", "gemma-4-31b", "qwen-3-235b"]

[providers.box]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1"
models = [{ name = "vision-large", images = true }, "text-small"]

[providers.groq]
models = [{ name = "openai/gpt-oss-120b", images = true }]
""",
        GROQ_API_KEY="g",
        CEREBRAS_API_KEY="c",
    )
    images = {(p.name, m.name): m.images for p in settings.providers for m in p.models}
    assert images == {
        ("groq", "openai/gpt-oss-120b"): True,  # the file's word over the preset's
        ("cerebras", "gpt-oss-120b"): False,
        ("cerebras", "gemma-4-31b"): True,
        ("cerebras", "qwen-3-235b"): None,  # not known: tried
        ("box", "vision-large"): True,
        ("box", "text-small"): None,
    }
