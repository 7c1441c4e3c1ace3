"""Writing the usage ledger: one row per model call, keyed by (tenant, request id)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

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


def usage_record(entry: UsageEntry) -> bool:
    """Insert the record unless one exists for (tenant, request id). Returns True if written.
    Sync (call it through sync_to_async from async code)."""
    usage = entry.usage or Usage()
    try:
        with transaction.atomic():
            UsageRecord.objects.create(
                tenant_id=entry.tenant_id,
                request_id=entry.request_id,
                feature=entry.feature,
                user_id=entry.user_id,
                api_key_id=entry.api_key_id,
                provider=entry.provider,
                model=entry.model,
                price_id=entry.price_id,
                prompt_version=entry.prompt_version,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_tokens=usage.cached_tokens,
                tokens_estimated=usage.estimated,
                cost_micros=entry.cost_micros,
                billed_to=entry.billed_to,
                latency_ms=entry.latency_ms,
                ttft_ms=entry.ttft_ms,
                cache_status=entry.cache_status,
                outcome=entry.outcome,
                attempts=entry.attempts,
                error=entry.error[:200],
            )
    except IntegrityError:
        return False  # this request id is already recorded: never twice
    return True
