"""The semantic cache: answers stored in the tenant's own schema (pgvector), reused for a
similar question asked with the same prompt version, route, history and context. The query is
embedded locally (all-MiniLM-L6-v2), so a lookup costs no provider call."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django_tenants.utils import tenant_context
from pgvector.django import CosineDistance

from ai.gateway.cache import CachedAnswer
from ai.gateway.config import now
from tenants.models import Tenant

_SPACES = re.compile(r"\s+")


def normalise_query(text: str) -> str:
    return _SPACES.sub(" ", text).strip().lower()


async def query_vector(text: str) -> list[float]:
    from ai.embedding.minilm import get_embedder

    embedder = get_embedder()
    vectors = await asyncio.to_thread(embedder.embed, [text], truncate=True)
    return vectors[0].tolist()


def _nearest(tenant: Tenant, fingerprint: str, vector: list[float]) -> CachedAnswer | None:
    from ai.models import SemanticCacheEntry

    with tenant_context(tenant):
        entry = (
            SemanticCacheEntry.objects.filter(fingerprint=fingerprint, expires_at__gt=now())
            .annotate(distance=CosineDistance("embedding", vector))
            .order_by("distance")
            .first()
        )
    if entry is None or 1 - entry.distance < settings.AI_SEMANTIC_THRESHOLD:
        return None
    return CachedAnswer(entry.answer, entry.model, "", entry.prompt_version)


def _store(
    tenant: Tenant, feature: str, fingerprint: str, query: str, vector: list[float],
    answer: CachedAnswer, ttl: int,
) -> None:  # fmt: skip
    from ai.models import SemanticCacheEntry

    with tenant_context(tenant):
        SemanticCacheEntry.objects.create(
            feature=feature, fingerprint=fingerprint, query=query, embedding=vector,
            answer=answer.text, model=answer.model, prompt_version=answer.prompt_version,
            expires_at=now() + timedelta(seconds=ttl),
        )  # fmt: skip


async def semantic_lookup(tenant: Tenant, fingerprint: str, vector: list[float]):
    return await sync_to_async(_nearest)(tenant, fingerprint, vector)


async def semantic_store(
    tenant: Tenant, feature: str, fingerprint: str, query: str, vector: list[float],
    answer: CachedAnswer, ttl: int,
) -> None:  # fmt: skip
    await sync_to_async(_store)(tenant, feature, fingerprint, query, vector, answer, ttl)


def semantic_forget(tenant: Tenant) -> int:
    """Drop the tenant's semantic cache (e.g. after a document it may quote was deleted)."""
    from ai.models import SemanticCacheEntry

    with tenant_context(tenant):
        deleted, _ = SemanticCacheEntry.objects.all().delete()
    return deleted
