"""Pools of keys: several keys of one provider, each a member of its own, spread by headroom,
taken out when refused, sharing a budget when they share an account, and sticky per
conversation; driven over real HTTP against a fake Groq that knows each key's account."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ai_api.config import load_settings, preset_settings
from ai_api.fakes import FakeUpstream
from ai_api.fakes.limits import RateBook
from ai_api.providers import GROQ
from ai_api.server import running
from ai_api.settings import ConfigError, Settings, key_label

KA, KB, KC = "gsk_pool_key_a_0123456789", "gsk_pool_key_b_0123456789", "gsk_pool_key_c_0123456789"
MODEL = "openai/gpt-oss-120b"


def pooled(fake: FakeUpstream, keys: str, **overrides: Any) -> Settings:
    """A gateway over `fake` as Groq with `keys` (comma-separated) in `GROQ_API_KEY`, without
    the preset's guessed limits (each key's come from the fake's headers)."""
    p = preset_settings(GROQ, {"GROQ_API_KEY": keys}, base_url=fake.base_url)
    p = replace(p, models=tuple(replace(m, limits=()) for m in p.models))
    return Settings(providers=(p,), port=0, ledger="").with_overrides(**overrides)


async def ask(client: aiohttp.ClientSession, url: str, messages: list[dict[str, str]]) -> int:
    body = {"model": MODEL, "messages": messages}
    async with client.post(url + "/v1/chat/completions", json=body) as response:
        await response.read()
        return response.status


def distinct(i: int) -> list[dict[str, str]]:
    """A conversation of its own (stickiness does not apply across them)."""
    return [{"role": "user", "content": f"question number {i}"}]


async def get(client: aiohttp.ClientSession, url: str, path: str) -> Any:
    async with client.get(url + path) as response:
        assert response.status == 200
        return await (response.json() if path.startswith("/usage") else response.text())


# --- configuration -------------------------------------------------------------------------


def test_a_variable_with_several_keys_is_a_pool_labelled_by_digest():
    settings = load_settings({"GROQ_API_KEY": f"{KA}, {KB},{KC}"})
    (groq,) = settings.providers
    assert [k.label for k in groq.keys] == [key_label(KA), key_label(KB), key_label(KC)]
    assert [k.secret.reveal() for k in groq.keys] == [KA, KB, KC]
    assert all(re.fullmatch(r"[0-9a-f]{6}", k.label) for k in groq.keys)
    assert all(k.label not in key for k in groq.keys for key in (KA, KB, KC))
    # The label does not depend on the key's place in the list.
    again = load_settings({"GROQ_API_KEY": f"{KC},{KA}"}).providers[0]
    assert {k.label for k in again.keys} == {key_label(KA), key_label(KC)}
    # One key is no pool: its names stay the provider's own.
    assert load_settings({"GROQ_API_KEY": KA}).providers[0].keys == ()


def test_a_key_listed_twice_is_refused():
    with pytest.raises(ConfigError, match="listed twice"):
        load_settings({"GROQ_API_KEY": f"{KA},{KA}"})


def test_the_config_file_lists_key_variables_with_accounts_and_labels(tmp_path: Path):
    path = tmp_path / "ai-api.toml"
    path.write_text(
        """
[providers.groq]
api_key_env = ["GROQ_A", {env = "GROQ_B", account = "org", label = "work-b"},
               {env = "GROQ_C", account = "org"}, "GROQ_UNSET"]
"""
    )
    env = {"GROQ_A": KA, "GROQ_B": KB, "GROQ_C": KC}
    settings = load_settings(env, path)
    (groq,) = settings.providers
    assert [(k.label, k.account, k.key_env) for k in groq.keys] == [
        (key_label(KA), "", "GROQ_A"),
        ("work-b", "org", "GROQ_B"),
        (key_label(KC), "org", "GROQ_C"),
    ]
    assert any("GROQ_UNSET is not set" in p for p in settings.problems)
    path.write_text('[providers.groq]\napi_key_env = [{env = "GROQ_A", label = "no spaces"}]\n')
    with pytest.raises(ConfigError, match="label"):
        load_settings(env, path)


# --- routing ---------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> Any:
    async with FakeUpstream("groq", api_key={KA: "a", KB: "b", KC: "c"}) as fake:
        fake.enforce_limits = True
        yield fake


def budgets(fake: FakeUpstream, requests: dict[str, int]) -> None:
    """Give each of the fake's accounts its own daily request allowance."""
    for account, limit in requests.items():
        fake.books[account] = RateBook(limit, 1_000_000, time.monotonic)


async def test_90_requests_spread_over_three_keys_by_headroom(fake, client):
    budgets(fake, {"a": 60, "b": 30, "c": 15})
    async with running(pooled(fake, f"{KA},{KB},{KC}")) as url:
        statuses = [await ask(client, url, distinct(i)) for i in range(90)]
        report = await get(client, url, "/usage")
        metrics = await get(client, url, "/metrics")
    assert statuses == [200] * 90  # no key ran dry: none answered 429
    assert sum(fake.by_key.values()) == 90
    # Spread by the share each key has left: 60:30:15 leaves each the same share at the end.
    a, b, c = fake.by_key[KA], fake.by_key[KB], fake.by_key[KC]
    assert abs(a - 90 * 60 / 105) <= 3, fake.by_key
    assert abs(b - 90 * 30 / 105) <= 3, fake.by_key
    assert abs(c - 90 * 15 / 105) <= 3, fake.by_key
    # The ledger, /usage and /metrics name each key by its label, never by the key.
    rows = {r["key"]: r["requests"] for r in report["days"]}
    assert rows == {key_label(KA): a, key_label(KB): b, key_label(KC): c}
    assert {m["key"] for m in report["members"] if m["name"] == f"groq/{MODEL}"} == set(rows)
    attempts = Counter[str]()
    for family in text_string_to_metric_families(metrics):
        if family.name == "ai_api_upstream_attempts":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["model"] == MODEL:
                    attempts[sample.labels["key"]] += int(sample.value)
    assert attempts == Counter(rows)
    for key in (KA, KB, KC):
        assert key not in str(report)
        assert key not in metrics
        assert key[:12] not in metrics


async def test_a_key_refused_mid_run_is_taken_out_and_named_by_its_label(fake, client, caplog):
    caplog.set_level("ERROR", "ai_api.rationing")
    async with running(pooled(fake, f"{KA},{KB},{KC}")) as url:
        first = [await ask(client, url, distinct(i)) for i in range(15)]
        fake.revoke(KB)
        before = fake.by_key[KB]
        rest = [await ask(client, url, distinct(100 + i)) for i in range(30)]
        report = await get(client, url, "/usage")
    assert first == [200] * 15
    assert rest == [200] * 30
    assert before >= 3  # it had its share before
    assert fake.by_key[KB] == before  # refused requests are not counted by the fake...
    refused = [s for s in fake.requests if s.status == 401]
    assert len(refused) == 1  # ...and it was asked once after the refusal, then never again
    assert fake.by_key[KA] + fake.by_key[KC] == 45 - before
    lines = [r.getMessage() for r in caplog.records if "refused its key" in r.getMessage()]
    assert len(lines) == 1
    assert key_label(KB) in lines[0]
    assert "GROQ_API_KEY" in lines[0]
    assert KB not in caplog.text
    assert KB[:10] not in caplog.text
    # Out for every model of the provider, not only the one it was refused on.
    keyed = [m for m in report["members"] if m["key"] == key_label(KB)]
    assert len(keyed) > 1
    assert all(m["key_refused"] for m in keyed)
    assert not any(m["key_refused"] for m in report["members"] if m["key"] != key_label(KB))


async def test_keys_of_one_account_share_one_budget(tmp_path: Path, client):
    async with FakeUpstream("groq", api_key={KA: "org", KB: "org", KC: "solo"}) as fake:
        path = tmp_path / "ai-api.toml"
        path.write_text(
            f"""
[providers.groq]
base_url = "{fake.base_url}"
guesses = false
api_key_env = [{{env = "K1", account = "org"}}, {{env = "K2", account = "org"}}, "K3"]
"""
        )
        settings = load_settings({"K1": KA, "K2": KB, "K3": KC}, path)
        settings = settings.with_overrides(port=0, ledger="")
        async with running(settings) as url:
            for i in range(12):
                assert await ask(client, url, distinct(i)) == 200
            report = await get(client, url, "/usage")
    (org,) = [b for b in report["budgets"] if b["account"] == "org" and b["model"] == MODEL]
    (requests,) = [w for w in org["windows"] if w["kind"] == "requests"]
    # One budget: the org's daily window counts what both of its keys sent.
    spent = fake.by_key[KA] + fake.by_key[KB]
    assert fake.by_key[KA] >= 1
    assert fake.by_key[KB] >= 1
    assert requests["remaining"] == requests["limit"] - spent
    assert requests["remaining"] == fake.books["org"].requests.remaining(time.monotonic())
    assert {b["account"] for b in report["budgets"] if b["model"] == MODEL} == {
        "org",
        f"groq#{key_label(KC)}",
    }


async def test_a_conversation_goes_back_to_the_key_that_served_it(fake, client):
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    async with running(pooled(fake, f"{KA},{KB},{KC}")) as url:
        for i in range(4):
            assert await ask(client, url, turns) == 200
            turns += [
                {"role": "assistant", "content": f"answer {i}"},
                {"role": "user", "content": f"and then {i}?"},
            ]
    # Without stickiness the headroom would have moved each turn to another key.
    assert sorted(fake.by_key.values()) == [4]


async def test_stickiness_can_be_turned_off_per_route(fake, client, tmp_path: Path):
    path = tmp_path / "ai-api.toml"
    path.write_text(
        f"""
[providers.groq]
base_url = "{fake.base_url}"
guesses = false

[routes.plain]
members = ["groq/{MODEL}"]
sticky = "off"
"""
    )
    settings = load_settings({"GROQ_API_KEY": f"{KA},{KB},{KC}"}, path)
    turns = [{"role": "user", "content": "Hi"}]
    async with running(settings.with_overrides(port=0, ledger="")) as url:
        for _ in range(3):
            body = {"model": "plain", "messages": turns}
            async with client.post(url + "/v1/chat/completions", json=body) as response:
                assert response.status == 200
    assert sorted(fake.by_key.values()) == [1, 1, 1]  # spread by headroom instead


async def test_a_403_rests_only_its_member_not_the_key(fake, client):
    from ai_api.fakes import Fault

    fake.add_fault(Fault(status=403, message="This prompt was flagged."))
    async with running(pooled(fake, f"{KA},{KB},{KC}")) as url:
        statuses = [await ask(client, url, distinct(i)) for i in range(6)]
        report = await get(client, url, "/usage")
    assert statuses == [200] * 6  # the 403 failed over to another key
    assert not any(m["key_refused"] for m in report["members"])
    # The key that got it still answers other models' requests: its members elsewhere are ready.
    other = [m for m in report["members"] if m["name"] != f"groq/{MODEL}"]
    assert other
    assert all(m["cooldown_seconds"] == 0 for m in other)
