"""The soak and the fault runs (`bench/soak.py`, `bench/faults.py`) at a tiny scale, as a user
runs them, so that they keep working: each gives its figures and its verdict. No time is
asserted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "BENCH_NO_REEXEC": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    return done.stdout


RUN = re.compile(
    r"slow: received (\d+), recorded (\d+) .*?, missing (\d+); fast: received (\d+),"
    r" recorded (\d+) .*?, missing (\d+); begun in the last 50 ms: (\d+)"
)


def test_kill9_compares_what_the_upstream_received_with_the_ledger_and_judges_it():
    out = run("faults.py", "kill9", "--scale", "small")
    [figures] = RUN.findall(out)
    slow, slow_recorded, slow_missing, fast, fast_recorded, fast_missing, late = map(int, figures)
    # The slow streams were all in flight, past the flush interval: in the ledger, interrupted.
    assert (slow, slow_recorded, slow_missing) == (10, 10, 0), out
    assert "marked interrupted 10)" in out, out
    assert fast_missing == max(0, fast - fast_recorded)
    # The verdict is the figures': missing attempts beyond those begun in the last 50 ms fail.
    expected = "verdict: ok" if slow_missing + fast_missing <= late else "verdict: FAIL"
    assert out.rstrip().splitlines()[-1].startswith(expected), out


def test_hostile_upstreams_are_errors_alone_and_answered_through_a_fallback():
    out = run("faults.py", "hostile", "--scale", "small")
    for attack in ("huge-header", "endless-line", "huge-answer", "30000-headers", "nul-in-header"):
        [line] = [line for line in out.splitlines() if line.startswith(attack + ":")]
        assert "upstream_protocol_error" in line, line
        assert "route, after" in line, line
        assert "200, complete answer" in line, line
    assert out.rstrip().endswith("verdict: ok"), out


def test_slowloris_tricklers_are_closed_and_a_fresh_client_is_served():
    out = run("faults.py", "slowloris", "--scale", "small")
    assert "30 header tricklers: 30 of 30 closed" in out, out
    assert "30 body tricklers: 30 of 30 closed" in out, out
    assert "30 answered 408" in out, out
    assert re.search(r"50 silent connections \(cap 40\): 50 of 50 closed.*10 answered 503", out)
    assert "1 x " in out.split("WARNING ai_api.connections")[0].splitlines()[-1], out  # one line
    assert out.rstrip().endswith("verdict: ok"), out


def test_the_soak_holds_its_streams_and_gives_a_verdict():
    args = ["--minutes", "0.1", "--streams", "20", "--chunk-delay", "0.05", "--chunks", "10"]
    result = json.loads(run("soak.py", *args, "--warmup", "0.03", "--every", "1", "--json"))
    assert result["answered"] > 0
    assert result["errors"] == 0
    assert result["open_after_warmup_max"] == 20
    assert result["verdict"] in ("flat", "growing")
    assert len(result["samples"]) >= 5
