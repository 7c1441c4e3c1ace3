"""Tenant-schema AI data: the tenant's own provider keys (BYOK) and its semantic cache."""

from __future__ import annotations

from django.db import models
from pgvector.django import HnswIndex, VectorField

from ai.catalog.models import Provider

SEMANTIC_DIMENSIONS = 384  # all-MiniLM-L6-v2, the local embedder


class ProviderKey(models.Model):
    """A tenant's own key for a provider, encrypted at rest (ai.secrets). Living in the tenant's
    schema, it cannot be read while another tenant's schema is active."""

    provider = models.CharField(max_length=32, choices=Provider.choices, unique=True)
    encrypted_key = models.TextField()
    last4 = models.CharField(max_length=4)
    base_url = models.URLField(blank=True, help_text="OpenAI-compatible servers only.")
    created_by_email = models.CharField(max_length=254, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.provider} key ...{self.last4}"

    @property
    def masked(self) -> str:
        return f"••••••••{self.last4}"


class SemanticCacheEntry(models.Model):
    """An answer reusable for a similar question with the same prompt version and context."""

    feature = models.CharField(max_length=32)
    fingerprint = models.CharField(max_length=64, help_text="Route, prompt version, context ids.")
    query = models.TextField()
    embedding = VectorField(dimensions=SEMANTIC_DIMENSIONS)
    answer = models.TextField()
    model = models.CharField(max_length=80)
    prompt_version = models.CharField(max_length=80, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [
            HnswIndex(
                name="semantic_cache_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            models.Index(fields=["fingerprint"], name="semantic_cache_fp"),
        ]

    def __str__(self) -> str:
        return f"{self.feature}: {self.query[:40]}"
