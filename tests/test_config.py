"""Settings from the environment and `.env`."""

import pytest

from ai_api.config import load_settings, read_environment
from ai_api.providers import CEREBRAS, GROQ
from ai_api.settings import ConfigError, Secret


def test_no_keys_means_no_providers_and_original_defaults():
    settings = load_settings({})
    assert settings.providers == ()
    assert (settings.host, settings.port) == ("127.0.0.1", 3000)
    # A provider silent for 15 s before its first chunk is left for the next member (the
    # failover methodology's limit; reasoning models stream their reasoning early).
    assert settings.first_token_timeout == 10.0


def test_a_provider_is_active_when_its_key_is_set_in_preset_order():
    settings = load_settings({"CEREBRAS_API_KEY": "csk-1", "GROQ_API_KEY": "gsk_1"})
    assert [p.name for p in settings.providers] == ["groq", "cerebras"]
    groq, cerebras = settings.providers
    assert groq.base_url == GROQ.base_url
    assert (groq.model, groq.models[0].max_tokens) == ("openai/gpt-oss-120b", 4096)
    assert [m.name for m in groq.models] == ["openai/gpt-oss-120b", *GROQ.models]
    assert (cerebras.model, cerebras.models[0].max_tokens) == (CEREBRAS.default_model, 8192)
    assert groq.api_key.reveal() == "gsk_1"


def test_blank_key_does_not_activate_a_provider():
    assert load_settings({"GROQ_API_KEY": "  "}).providers == ()


def test_per_provider_overrides():
    settings = load_settings(
        {
            "GROQ_API_KEY": "k",
            "GROQ_BASE_URL": "http://127.0.0.1:9/",
            "GROQ_MODEL": "llama-3.1-8b-instant",
            "GROQ_MAX_TOKENS": "100",
            "PORT": "8080",
            "HOST": "0.0.0.0",
        }
    )
    (groq,) = settings.providers
    assert (groq.base_url, groq.model, groq.models[-1].max_tokens) == (
        "http://127.0.0.1:9",
        "llama-3.1-8b-instant",
        100,
    )
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PORT": "http"}, "PORT='http' is not a valid int"),
        ({"GROQ_API_KEY": "k", "GROQ_MAX_TOKENS": "0"}, "GROQ_MAX_TOKENS='0' must be at least 1"),
        ({"AI_API_READ_TIMEOUT": "-1"}, "AI_API_READ_TIMEOUT"),
    ],
)
def test_bad_values_are_config_errors(env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_settings(env)


def test_dotenv_is_read_and_real_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text('GROQ_API_KEY="from-file"\nPORT=4000\n# comment\nexport HOST=::1\n')
    env = read_environment({"PORT": "5000"}, dotenv)
    assert env["GROQ_API_KEY"] == "from-file"
    assert env["PORT"] == "5000"
    assert env["HOST"] == "::1"
    assert read_environment({"A": "1"}, tmp_path / "missing") == {"A": "1"}


def test_secrets_never_show_themselves():
    settings = load_settings({"GROQ_API_KEY": "gsk_supersecret"})
    assert "supersecret" not in repr(settings)
    assert "supersecret" not in str(Secret("gsk_supersecret"))
