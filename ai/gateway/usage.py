"""Writing the usage ledger: one row per model call, keyed by (tenant, request id)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connections
from django.utils import timezone

from ai.gateway.config import Price
from ai.providers.base import Usage
from billing.models import UsageRecord


def cost_micros(usage: Usage, price: Price | None) -> int:
    """Micro-dollars for `usage` at `price` (prices are per million tokens). Cached input
    tokens are billed at the cached rate instead of the input rate."""
    if price is None:
        return 0
    uncached = max(0, usage.input_tokens - usage.cached_tokens)
    dollars_times_million = (
        uncached * price.input_per_mtok
        + usage.cached_tokens * price.cached_input_per_mtok
        + usage.output_tokens * price.output_per_mtok
    )
    return round(dollars_times_million)


@dataclass
class UsageEntry:
    tenant_id: int
    request_id: str
    feature: str
    user_id: int | None
    api_key_id: int | None
    provider: str = ""
    model: str = ""
    price_id: int | None = None
    prompt_version: str = ""
    usage: Usage | None = None
    cost_micros: int = 0
    billed_to: str = UsageRecord.BilledTo.PLATFORM
    latency_ms: int = 0
    ttft_ms: int | None = None
    cache_status: str = UsageRecord.CacheStatus.MISS
    outcome: str = UsageRecord.Outcome.OK
    attempts: int = 0
    error: str = ""


_COLUMNS = (
    "tenant_id", "request_id", "created_at", "feature", "user_id", "api_key_id", "provider",
    "model", "price_id", "prompt_version", "input_tokens", "output_tokens", "cached_tokens",
    "tokens_estimated", "cost_micros", "billed_to", "latency_ms", "ttft_ms", "cache_status",
    "outcome", "attempts", "error",
)  # fmt: skip


def _values(entry: UsageEntry, created_at: datetime) -> tuple[object, ...]:
    usage = entry.usage or Usage()
    return (
        entry.tenant_id, entry.request_id, created_at, entry.feature, entry.user_id,
        entry.api_key_id, entry.provider, entry.model, entry.price_id, entry.prompt_version,
        usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.estimated,
        entry.cost_micros, entry.billed_to, entry.latency_ms, entry.ttft_ms,
        entry.cache_status, entry.outcome, entry.attempts, entry.error[:200],
    )  # fmt: skip


def usage_record_many(entries: list[UsageEntry]) -> None:
    """One INSERT for all entries; a (tenant, request id) already recorded is skipped, so a
    call is never metered twice. Sync. Plain SQL: on the hot path of every model call the
    ORM's statement building costs as much as the database round trip."""
    # Qualified, so it lands in public whatever schema this thread's connection is on.
    table = f'"{settings.PUBLIC_SCHEMA_NAME}"."{UsageRecord._meta.db_table}"'
    row = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    created_at = timezone.now()
    params = [value for entry in entries for value in _values(entry, created_at)]
    sql = (
        f"INSERT INTO {table} ({', '.join(_COLUMNS)}) VALUES "  # noqa: S608 (fixed identifiers)
        + ", ".join([row] * len(entries))
        + " ON CONFLICT (tenant_id, request_id) DO NOTHING"
    )
    with connections["ledger"].cursor() as cursor:  # autocommit, outside any caller transaction
        cursor.execute(sql, params)
