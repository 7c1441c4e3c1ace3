"""The usage ledger (public schema): one row per model call, written once."""

from __future__ import annotations

from django.db import models

from tenants.models import Tenant


class UsageRecord(models.Model):
    class CacheStatus(models.TextChoices):
        MISS = "miss", "Miss"
        EXACT = "exact", "Exact cache hit"
        SEMANTIC = "semantic", "Semantic cache hit"
        STALE = "stale", "Stale cache answer (providers down)"
        BYPASS = "bypass", "Cache off"

    class Outcome(models.TextChoices):
        OK = "ok", "Complete"
        INCOMPLETE = "incomplete", "Incomplete (stream broke)"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected by a guardrail"
        DISABLED = "disabled", "AI switched off"

    class BilledTo(models.TextChoices):
        PLATFORM = "platform", "Platform"
        TENANT_KEY = "tenant_key", "Tenant's own provider key (BYOK)"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="usage_records")
    request_id = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    feature = models.CharField(max_length=32)
    provider = models.CharField(max_length=32, blank=True)
    model = models.CharField(max_length=80, blank=True)
    price = models.ForeignKey(
        "ai_catalog.ModelPrice", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    prompt_version = models.CharField(max_length=80, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(default=False)
    # Micro-dollars: exact integer arithmetic for money.
    cost_micros = models.BigIntegerField(default=0)
    billed_to = models.CharField(max_length=16, choices=BilledTo.choices, default=BilledTo.PLATFORM)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    cache_status = models.CharField(max_length=16, choices=CacheStatus.choices)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "request_id"], name="usage_once_per_request")
        ]
        indexes = [models.Index(fields=["tenant", "created_at"], name="usage_tenant_time")]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.request_id} {self.model} {self.outcome}"
