"""The exact answer cache: Redis, keyed by a hash that starts with the tenant, so two tenants
never share an entry even for the same prompt. Only complete answers are stored; a longer-lived
stale copy answers when every provider is down."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from saas.lib.redis import async_client

PREFIX = "atrium:ai:cache:"


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    model: str
    provider: str
    prompt_version: str


def cache_fingerprint(**parts: Any) -> str:
    """A stable hash of everything that decides the answer (route, prompt version, messages,
    parameters, context ids)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_ttl(feature: str) -> int:
    return settings.AI_CACHE_TTL_BY_FEATURE.get(feature, settings.AI_CACHE_TTL_S)


def _key(tenant_schema: str, fingerprint: str, stale: bool = False) -> str:
    return f"{PREFIX}{tenant_schema}:{'stale:' if stale else ''}{fingerprint}"


async def cache_get(tenant_schema: str, fingerprint: str, *, stale: bool = False):
    raw = await async_client().get(_key(tenant_schema, fingerprint, stale))
    return CachedAnswer(**json.loads(raw)) if raw else None


async def cache_put(
    tenant_schema: str, fingerprint: str, answer: CachedAnswer, *, ttl: int
) -> None:
    raw = json.dumps(answer.__dict__)
    async with async_client().pipeline(transaction=False) as pipe:
        if ttl > 0:
            pipe.set(_key(tenant_schema, fingerprint), raw, ex=ttl)
        if settings.AI_STALE_TTL_S > 0:
            pipe.set(_key(tenant_schema, fingerprint, stale=True), raw, ex=settings.AI_STALE_TTL_S)
        await pipe.execute()


async def cache_clear_tenant(tenant_schema: str) -> int:
    """Drop every cached answer of a tenant (e.g. after a document it cites was deleted)."""
    client = async_client()
    deleted = 0
    async for key in client.scan_iter(match=f"{PREFIX}{tenant_schema}:*", count=500):
        deleted += await client.delete(key)
    return deleted
