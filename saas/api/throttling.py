"""Requests and model tokens per minute, per API key and per tenant (limits per plan tier,
settings.API_RATE_LIMITS), charged atomically to both buckets in Redis (saas.lib.ratelimit).
Over the limit: 429 with Retry-After. Every response carries RateLimit-Limit / -Remaining /
-Reset (views.TenantAPIView) for the request limit."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from ai.gateway.routing import tier_of
from saas.lib.ratelimit import Bucket, Decision, buckets_refund, buckets_take
from tenants.models import APIKey

logger = logging.getLogger(__name__)


def request_buckets(key: APIKey) -> list[Bucket]:
    limits = settings.API_RATE_LIMITS[tier_of(key.tenant)]
    return [
        Bucket(f"key:{key.pk}", limits["key_per_minute"]),
        Bucket(f"tenant:{key.tenant.schema_name}", limits["tenant_per_minute"]),
    ]


class KeyAndTenantRateLimit(BaseThrottle):
    decision: Decision | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        key = request.auth
        if not isinstance(key, APIKey):
            return True  # refused before this anyway (no key)
        try:
            self.decision = buckets_take(request_buckets(key))
        except redis.RedisError as error:
            # Serving unmetered for a moment beats refusing every request while Redis is away.
            logger.warning("rate limiter unavailable, request admitted: %s", error)
            return True
        request._request.rate_limit = self.decision
        return self.decision.admitted

    def wait(self) -> float | None:
        return self.decision.retry_after_s if self.decision else None


def token_buckets(key: APIKey) -> list[Bucket]:
    limits = settings.API_RATE_LIMITS[tier_of(key.tenant)]
    return [
        Bucket(f"tokens:key:{key.pk}", limits["key_tokens_per_minute"]),
        Bucket(f"tokens:tenant:{key.tenant.schema_name}", limits["tenant_tokens_per_minute"]),
    ]


def tokens_take(key: APIKey, estimate: int) -> int:
    """Charge a model call's token estimate (prompt + most it may answer) to the key's and the
    tenant's per-minute token buckets before it runs. Returns the tokens charged, to settle with
    `tokens_settle` once the real count is known. Raises Throttled (429, Retry-After)."""
    buckets = token_buckets(key)
    # A request bigger than a whole minute's allowance waits for a full bucket, not forever.
    charge = max(1, min(estimate, *(bucket.capacity for bucket in buckets)))
    try:
        decision = buckets_take(buckets, cost=charge)
    except redis.RedisError as error:
        logger.warning("token limiter unavailable, request admitted: %s", error)
        return 0
    if not decision.admitted:
        raise Throttled(
            wait=decision.retry_after_s,
            detail=f"Token rate limit reached ({decision.limit} tokens per minute).",
        )
    return charge


def tokens_settle(key: APIKey, charged: int, used: int) -> None:
    """Give back what a call was charged beyond the tokens it used."""
    try:
        buckets_refund(token_buckets(key), charged - used)
    except redis.RedisError as error:
        logger.warning("token limiter unavailable, refund dropped: %s", error)
