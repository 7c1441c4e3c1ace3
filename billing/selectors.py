"""Reads of the usage ledger: a tenant's totals and breakdowns for a period."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate

from billing.models import UsageRecord
from tenants.models import Tenant


@dataclass
class UsageLine:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_micros: int = 0


@dataclass
class UsageReport:
    start: date
    end: date
    totals: UsageLine
    by_day: list[tuple[date, UsageLine]] = field(default_factory=list)
    by_model: list[tuple[str, UsageLine]] = field(default_factory=list)
    by_feature: list[tuple[str, UsageLine]] = field(default_factory=list)


_SUMS = {
    "requests": Count("id"),
    "input_tokens": Sum("input_tokens", default=0),
    "output_tokens": Sum("output_tokens", default=0),
    "cached_tokens": Sum("cached_tokens", default=0),
    "cost_micros": Sum("cost_micros", default=0),
}


def usage_report(*, tenant: Tenant, start: date, end: date) -> UsageReport:
    """`tenant`'s metered calls from `start` to `end` (inclusive, UTC days): totals, every day
    of the period (zeros included, for charts), and per model and feature, costliest first."""
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    rows = UsageRecord.objects.filter(tenant=tenant, created_at__gte=since, created_at__lt=until)
    report = UsageReport(start, end, UsageLine(**rows.aggregate(**_SUMS)))
    days = {
        row.pop("day"): UsageLine(**row)
        for row in rows.annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(**_SUMS)
        .order_by()
    }
    report.by_day = [
        (day, days.get(day, UsageLine()))
        for day in (start + timedelta(days=n) for n in range((end - start).days + 1))
    ]
    for name, target in (("model", report.by_model), ("feature", report.by_feature)):
        grouped = rows.values(name).annotate(**_SUMS).order_by("-cost_micros", name)
        target.extend((row.pop(name), UsageLine(**row)) for row in grouped)
    return report
