"""Requests per minute per API key and per tenant (limits per plan tier, settings.API_RATE_LIMITS),
charged atomically to both buckets in Redis (saas.lib.ratelimit). Over the limit: 429 with
Retry-After. Every response carries RateLimit-Limit / -Remaining / -Reset (views.TenantAPIView)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from ai.gateway.routing import tier_of
from saas.lib.ratelimit import Bucket, Decision, buckets_take
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
