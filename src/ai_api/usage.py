"""What was spent and what is left: the report behind `GET /usage` and `ai-api usage`."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from typing import Any

from .headroom import daily_share, source_of
from .limits import DAY, period_name
from .rationing import Rationing
from .routing import Deployment
from .store.ledger import day_of, day_start


async def report(
    rationing: Rationing,
    deployments: Iterable[Deployment],
    days: int = 7,
    gone: Collection[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Per-day totals from the ledger, the headroom of every budget, the health of every
    member (`gone`: the (provider, model) pairs the catalogue found withdrawn), and what the
    answer cache saved."""
    now = rationing.clock()
    rows = await rationing.ledger.usage(day_of(now - (days - 1) * DAY))
    budgets: dict[str, dict[str, Any]] = {}
    members = []
    for d in sorted(deployments, key=lambda d: (d.public_name, d.key)):
        key = d.budget_key
        account, model = key.split("|", 1)
        snapshot = await rationing.snapshot(d)
        if key not in budgets:
            windows = snapshot.windows
            limits = rationing.limits(d)
            budgets[key] = {
                "account": account,
                "model": model,
                "daily_share_left": round(daily_share(windows), 4),
                "windows": [
                    {
                        "kind": w.kind,
                        "period": period_name(w.period),
                        "limit": w.limit,
                        "source": source_of(w, limits),
                        "used": round(w.used),
                        "remaining": None if w.remaining is None else max(0, round(w.remaining)),
                    }
                    for w in sorted(windows, key=lambda w: (w.kind, w.period))
                ],
            }
        members.append(
            {
                "name": d.public_name,
                "key": d.key or None,
                "account": account,
                "circuit": snapshot.health.circuit,
                "cooldown_seconds": max(0.0, round(snapshot.ready_at - now, 1)),
                "key_refused": rationing.refused.out(d, now),
                "withdrawn": (d.name, d.model) in gone,
            }
        )
    return {
        "now": now,
        "days": [
            {
                "day": r.day,
                "provider": r.provider,
                "account": r.account,
                "model": r.model,
                "key": r.key or None,
                "requests": r.requests,
                "errors": r.errors,
                "client_closed": r.client_closed,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "estimated_requests": r.estimated_requests,
            }
            for r in rows
        ],
        "budgets": list(budgets.values()),
        "members": members,
        "cache": dataclasses.asdict(
            await rationing.ledger.cache_since(day_start(day_of(now - (days - 1) * DAY)))
        ),
    }


def render(data: dict[str, Any]) -> str:
    """The report as readable tables."""
    lines = ["Usage per day (UTC):"]
    lines.append(
        f"  {'day':<10}  {'provider/model':<44} {'requests':>8} {'errors':>6} {'left':>5}"
        f" {'tokens':>10}"
    )
    for r in data["days"]:
        tokens = r["prompt_tokens"] + r["completion_tokens"]
        name = f"{r['provider']}/{r['model']}" + (f" #{r['key']}" if r.get("key") else "")
        lines.append(
            f"  {r['day']:<10}  {name:<44} {r['requests']:>8} {r['errors']:>6}"
            f" {r['client_closed']:>5} {tokens:>10}"
        )
    if not data["days"]:
        lines.append("  (nothing recorded yet)")
    lines.append("")
    lines.append("Daily free quota left, and every window:")
    for b in data["budgets"]:
        share = f"{b['daily_share_left']:.0%}"
        windows = (
            ", ".join(
                f"{w['kind']}/{w['period']} {w['remaining'] if w['remaining'] is not None else '?'}"
                f" of {w['limit'] if w['limit'] is not None else '?'} ({w['source']})"
                for w in b["windows"]
            )
            or "no known limits"
        )
        lines.append(f"  {b['account']}/{b['model']}: {share} of the day left; {windows}")
    cache = data.get("cache") or {}
    if cache.get("hits") or cache.get("misses"):
        saved = cache["prompt_tokens_saved"] + cache["completion_tokens_saved"]
        lines.append("")
        lines.append(
            f"Answer cache: {cache['hits']} hits, {cache['misses']} misses; {saved} tokens saved"
        )
    lines.append("")
    lines.append("Members:")
    for m in data["members"]:
        rest = f", cooling down {m['cooldown_seconds']:g} s" if m["cooldown_seconds"] else ""
        if m.get("key_refused"):
            rest += ", key refused"
        if m.get("withdrawn"):
            rest += ", withdrawn by its provider"
        name = m["name"] + (f" #{m['key']}" if m.get("key") else "")
        lines.append(f"  {name}: circuit {m['circuit']}{rest}")
    return "\n".join(lines)
