"""The Failover Bench scenarios (`bench/failover.py`) against ai-api and its fake upstreams,
each run as the benchmark runs it; and its scoring, on outcomes made up to land in each
verdict."""

from __future__ import annotations

from typing import Any

import pytest
from bench import failover as fb

FALLBACK = "gpt-oss-120b"  # Cerebras's default model, the route's second member

# The verdict each scenario gets. The one that is not a pass says why that is the right conduct.
EXPECTED: dict[str, fb.Verdict] = {
    "S01": "pass",
    "S02": "pass",
    "S03": "pass",
    "S04": "pass",
    "S05": "pass",
    "S06": "pass",
    "S07": "pass",
    "S08": "pass",
    "S09": "pass",
    "S10": "pass",
    "S11": "pass",
    # Cerebras's known window (65,536) is smaller than Groq's (131,072): it is not asked, since
    # the 400 is evidence that the request does not fit 131,072. The scenario's pass needs a
    # fallback with a larger (or unknown) window; this route has none, and failing cleanly is
    # the right conduct here.
    "S12": "safe",
    "S13": "pass",
    "S14": "pass",
    "S15": "pass",
    "S16": "pass",
}


def test_the_table_has_the_sixteen_scenarios():
    assert [s.id for s in fb.SCENARIOS] == [f"S{i:02d}" for i in range(1, 17)]
    assert set(EXPECTED) == set(fb.BY_ID)
    for scenario in fb.SCENARIOS:
        assert all(c.kind in fb.JUDGES for c in scenario.checks), scenario.id
    assert len(fb.CANONICAL.split()) == 60


@pytest.mark.parametrize("scenario", fb.SCENARIOS, ids=[s.id for s in fb.SCENARIOS])
async def test_each_scenario_gets_its_verdict(scenario: fb.Scenario):
    result = await fb.run_scenario(scenario)
    assert result.verdict == EXPECTED[scenario.id], (result.reason, result.checks)
    assert result.outcome != "hang"


# The scoring alone


def measured(
    outcome: fb.Outcome = "success",
    content: str = fb.CANONICAL,
    primary: tuple[float, ...] = (0.0,),
    fallback: tuple[float, ...] = (),
    **more: Any,
) -> fb.Measured:
    """An outcome as a scenario would measure it: the call, and the attempts at these times."""
    call_fields = {k: more.pop(k) for k in ("elapsed", "model", "usage", "error") if k in more}
    call = fb.Call(outcome, content, **call_fields)
    attempts = [fb.Attempt(True, t, 503) for t in primary]
    attempts += [fb.Attempt(False, t, 200) for t in fallback]
    return fb.Measured(call, attempts, FALLBACK, **more)


def verdict(scenario_id: str, m: fb.Measured) -> fb.Verdict:
    return fb.judge(fb.BY_ID[scenario_id], m).verdict


def test_a_rescue_with_every_check_clean_passes():
    assert verdict("S03", measured(primary=(0.0, 0.5))) == "pass"


def test_a_rescue_with_an_advisory_check_failed_is_partial():
    assert verdict("S03", measured(primary=(0.0,), fallback=(0.1,))) == "partial"
    assert verdict("S01", measured(primary=(0.0, 0.5))) == "partial"  # retry-after not waited
    assert verdict("S07", measured(fallback=(15.0,), elapsed=15.2)) == "partial"


def test_a_bounded_clean_error_is_safe():
    assert verdict("S04", measured("error", "", primary=(0.0, 0.1, 0.2))) == "safe"
    assert verdict("S08", measured("error", "A gateway is judged")) == "safe"


def test_hangs_truncated_successes_and_failed_required_checks_fail():
    assert verdict("S05", measured("hang", "")) == "fail"
    assert verdict("S08", measured(content="A gateway is judged on the bad days")) == "fail"
    assert verdict("S02", measured(primary=tuple(range(7)), fallback=(7.0,))) == "fail"
    assert verdict("S01", measured(primary=(0.0, 0.1, 0.2), fallback=())) == "fail"  # hammered
    assert verdict("S06", measured(elapsed=101.0, fallback=(100.0,))) == "fail"
    assert verdict("S09", measured(alive_after=False, fallback=(30.0,))) == "fail"


def test_a_rejection_should_end_in_a_clean_error():
    assert verdict("S13", measured("error", "")) == "pass"
    assert verdict("S13", measured(fallback=(0.1,))) == "partial"  # answered around it
    assert verdict("S13", measured("error", "", primary=(0.0, 0.1))) == "fail"


def test_a_context_retry_must_shrink():
    def s12(*sizes: int) -> fb.Verdict:
        m = measured("error", "", primary=())
        m.attempts = [fb.Attempt(True, float(i), 400, size) for i, size in enumerate(sizes)]
        return verdict("S12", m)

    assert s12(100) == "safe"
    assert s12(100, 60) == "safe"  # a compacted retry is allowed
    assert s12(100, 100) == "fail"  # the same request again is not
    assert s12(100, 60, 30) == "fail"  # nor a third attempt


def test_a_prefill_refusal_must_not_be_the_final_error():
    m = measured("error", "", fallback=())
    m.attempts.append(fb.Attempt(False, 0.1, 400, prefill=True))
    assert verdict("S14", m) == "fail"
    assert verdict("S14", measured("error", "")) == "safe"
    assert verdict("S16", measured(fallback=(0.1,), model="openai/gpt-oss-120b")) == "fail"


def test_a_sequence_is_scored_on_the_outage_and_the_recovery():
    answered = fb.Call("success", fb.CANONICAL)
    refused = fb.Call("error", error="HTTP 429")
    calls = [(4.0 * i, answered) for i in range(20)]

    def s15(primary: list[tuple[float, int]], call_list: list[tuple[float, fb.Call]]) -> Any:
        attempts = [fb.Attempt(True, at, status) for at, status in primary]
        stats = fb.sequence_stats(call_list, attempts)
        m = fb.Measured(fb._summary(call_list), attempts, FALLBACK, sequence=stats)
        return stats, verdict("S15", m)

    stats, got = s15([(0.0, 503), (20.0, 503), (64.0, 200)], calls)
    assert (stats.during_down, stats.served_during_down, stats.recovered_after) == (15, 15, 4.0)
    assert got == "pass"
    assert s15([(0.0, 503), (52.0, 503), (92.0, 200)], calls)[1] == "fail"  # back after 32 s
    assert s15([(0.0, 503)], calls)[1] == "fail"  # never back
    some_refused = [(at, refused if 20 <= at < 60 else c) for at, c in calls]
    assert s15([(0.0, 503), (64.0, 200)], some_refused)[1] == "fail"
    one_cut = [(at, fb.Call("success", "A gateway") if at == 8.0 else c) for at, c in calls]
    assert s15([(0.0, 503), (64.0, 200)], one_cut)[1] == "fail"  # a truncated success


def test_the_scorecard_counts_each_verdict():
    results = [fb.judge(fb.BY_ID["S03"], measured(primary=(0.0, 0.5)))] * 2
    results.append(fb.judge(fb.BY_ID["S05"], measured("hang", "")))
    assert fb.scorecard(results) == "2 pass, 0 partial, 0 safe, 1 fail of 3"
