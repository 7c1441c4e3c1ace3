"""GET /api/v1/usage: a tenant's metered calls for a period, totals and per day, model and
feature; only its own; only with the usage:read scope; bad periods get a 400 problem."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.models import UsageRecord
from tenants.models import APIKey
from tests.conftest import host_of
from tests.test_api import api, key_for

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])


def record(tenant, when: str, *, model="gpt-4o-mini", feature="chat", tokens=(10, 5), cost=1500):
    row = UsageRecord.objects.create(
        tenant=tenant, request_id=f"r-{UsageRecord.objects.count()}", feature=feature,
        provider="openai", model=model, input_tokens=tokens[0], output_tokens=tokens[1],
        cost_micros=cost, cache_status="miss", outcome="ok",
    )  # fmt: skip
    created = datetime.fromisoformat(when).replace(tzinfo=UTC)
    UsageRecord.objects.filter(pk=row.pk).update(created_at=created)


@pytest.fixture
def ledger(world):
    # A past month: usage other tests meter "now" (committed by the ledger's own connection)
    # must not fall in the period these tests read.
    record(world.acme, "2025-10-31T23:59:59")  # the day before the period
    record(world.acme, "2025-11-01T00:00:00")
    record(world.acme, "2025-11-01T12:00:00", model="local-minilm", feature="embed", cost=0)
    record(world.acme, "2025-11-03T08:00:00", tokens=(100, 50), cost=1_234_567)
    record(world.acme, "2025-11-04T00:00:00")  # the day after
    record(world.globex, "2025-11-02T10:00:00", cost=9_000_000)
    return world


def test_it_reports_totals_every_day_and_the_costliest_models_first(ledger):
    client = api(host_of(ledger.acme), key_for(ledger.acme, scopes=["usage:read"]))
    response = client.get("/api/v1/usage?start=2025-11-01&end=2025-11-03")
    assert response.status_code == 200
    body = response.json()
    assert (body["start"], body["end"]) == ("2025-11-01", "2025-11-03")
    assert body["totals"] == {
        "requests": 3, "input_tokens": 120, "output_tokens": 60, "cached_tokens": 0,
        "cost_micros": 1_236_067, "cost_usd": "1.236067",
    }  # fmt: skip
    days = [(d["date"], d["requests"], d["cost_micros"]) for d in body["by_day"]]
    # globex's 2 November call is not acme's: that day is there, with zeros.
    assert days == [("2025-11-01", 2, 1500), ("2025-11-02", 0, 0), ("2025-11-03", 1, 1_234_567)]
    assert [(m["model"], m["requests"]) for m in body["by_model"]] == [
        ("gpt-4o-mini", 2),
        ("local-minilm", 1),
    ]
    assert {f["feature"]: f["requests"] for f in body["by_feature"]} == {"chat": 2, "embed": 1}


def test_globex_sees_only_its_own_usage(ledger):
    client = api(host_of(ledger.globex), key_for(ledger.globex, scopes=["usage:read"]))
    body = client.get("/api/v1/usage?start=2025-11-01&end=2025-11-30").json()
    assert body["totals"]["requests"] == 1 and body["totals"]["cost_usd"] == "9.000000"
    assert len(body["by_day"]) == 30


def test_the_default_period_is_this_month_so_far(world, settings):
    client = api(host_of(world.acme), key_for(world.acme, scopes=["usage:read"]))
    body = client.get("/api/v1/usage").json()
    assert body["start"].endswith("-01") and body["start"][:7] == body["end"][:7]
    assert len(body["by_day"]) == int(body["end"][-2:])
    assert sum(day["requests"] for day in body["by_day"]) == body["totals"]["requests"]


def test_it_needs_the_usage_scope(world):
    scopes = [s for s in APIKey.Scope.values if s != "usage:read"]
    response = api(host_of(world.acme), key_for(world.acme, scopes=scopes)).get("/api/v1/usage")
    assert response.status_code == 403


@pytest.mark.parametrize(
    "query, field",
    [
        ("start=2026-11-05&end=2026-11-01", "start"),
        ("start=2024-01-01&end=2026-01-01", "end"),
        ("start=yesterday", "start"),
        ("end=2026-13-01", "end"),
    ],
)
def test_a_bad_period_is_a_400_problem_naming_the_field(world, query, field):
    client = api(host_of(world.acme), key_for(world.acme, scopes=["usage:read"]))
    response = client.get(f"/api/v1/usage?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert field in response.json()["errors"]
