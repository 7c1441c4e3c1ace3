"""Shared helpers: percentiles, the result file, the printed table, a scratch database."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50": statistics.median(samples),
        "p95": percentile(samples, 95),
        "mean": statistics.fmean(samples),
    }


def goal(value: float, op: str, target: float) -> dict[str, Any]:
    met = value <= target if op == "<=" else value >= target
    return {"target": f"{op} {target}", "met": met}


def write_result(name: str, metrics: dict[str, float], goals: dict[str, dict[str, Any]]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    rounded = {key: round(value, 4) for key, value in metrics.items()}
    path.write_text(json.dumps({"bench": name, "metrics": rounded, "goals": goals}, indent=2))
    width = max(len(key) for key in metrics)
    print(f"\n== {name} ==")
    for key, value in rounded.items():
        mark = ""
        if key in goals:
            mark = f"   goal {goals[key]['target']}: {'met' if goals[key]['met'] else 'NOT MET'}"
        print(f"  {key:<{width}}  {value:>10}{mark}")
    print(f"  -> {path.relative_to(RESULTS.parent.parent)}")
    return path


def use_scratch_database(name: str) -> None:
    """Point Django at a database of its own on the same server, created if missing, so a
    benchmark never touches dev or test data. Must run before django.setup()."""
    import psycopg

    url = urlsplit(os.environ["DATABASE_URL"])
    admin = urlunsplit(url._replace(path="/postgres"))
    with psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{name}"))


def use_scratch_redis(db: int = 15) -> None:
    """Point Redis at an emptied database of its own (no breaker or cache state left over from
    tests or dev). Must run before django.setup()."""
    import redis

    url = urlsplit(os.environ["REDIS_URL"])
    os.environ["REDIS_URL"] = urlunsplit(url._replace(path=f"/{db}"))
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
