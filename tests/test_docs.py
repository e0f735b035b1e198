"""The READMEs stay true to the code they describe."""

from pathlib import Path

import pytest

from ai_api.providers import PRESETS
from ai_api.settings import KNOBS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["README.md", "README.es.md"])
def test_readme_has_the_two_commands_near_the_top_and_every_preset(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    head = text[: len(text) // 4]
    assert "python3 dev.py demo" in head
    assert "python3 dev.py test" in head
    for spec in PRESETS:
        assert f"| `{spec.name}` |" in text
        assert spec.note in text
        if spec.key_env:
            assert f"`{spec.key_env}`" in text
        if spec.default_model:
            assert f"`{spec.default_model}`" in text


def test_ci_runs_the_readme_test_command():
    assert "python3 dev.py test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("name", ["README.md", "README.es.md"])
def test_every_server_setting_is_in_the_readme_tables_and_the_server_keys(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    for knob in KNOBS:
        assert f"`{knob.env}`" in text or knob.env in ("HOST", "PORT"), knob.env
        if knob.in_file:
            assert f"`{knob.name}`" in text, knob.name


@pytest.mark.parametrize("name", ["README.md", "README.es.md"])
def test_the_pools_the_catalogue_and_the_cache_are_documented(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    for needle in ("ai-api models", "X-AI-API-Cache: use", "api_key_env = [", 'sticky = "keys"'):
        assert needle in text, needle
    for option in ("cache_sampled", "`sticky`", "ai_api_cache_requests_total"):
        assert option in text, option
