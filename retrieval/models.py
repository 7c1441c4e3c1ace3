"""The knowledge base, in each tenant's schema: documents and their chunks (text, position for
citations, embedding, full-text vector). Each tenant's vectors live in its own HNSW index."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import connection, models
from pgvector.django import HnswIndex, VectorField

# A new knowledge base's embedding model (catalog key), and the vector size of the index: the
# width of the chunks' vector column, so every model a tenant switches to must give vectors of
# this size (natively, or shortened on request as OpenAI's text-embedding-3 models do).
DEFAULT_EMBEDDING_MODEL = "local-minilm"
EMBEDDING_DIMENSIONS = 384  # all-MiniLM-L6-v2
TAG_MAX_CHARS = 40
MAX_TAGS = 20


def document_upload_path(document: Document, filename: str) -> str:
    # Per-tenant prefix: one tenant's files never share a folder with another's.
    return f"tenants/{connection.schema_name}/documents/{document.public_id}/{filename}"


class KnowledgeBase(models.Model):
    """The tenant's one knowledge base (row pk=1): the model its index is embedded with, and a
    model switch in progress. While `next_embedding_model` is set, chunks are embedded with
    both; searches keep using `embedding_model` until every ready document has vectors of the
    next one, then it takes over in one transaction."""

    SINGLETON_PK = 1

    embedding_model = models.CharField(max_length=80, default=DEFAULT_EMBEDDING_MODEL)
    next_embedding_model = models.CharField(max_length=80, blank=True)
    switch_started_at = models.DateTimeField(null=True, blank=True)
    switch_started_by = models.CharField(max_length=254, blank=True)
    switch_documents_total = models.PositiveIntegerField(default=0)
    switch_documents_done = models.PositiveIntegerField(default=0)
    switch_error = models.CharField(
        max_length=300, blank=True, help_text="Why the last switch stopped, for the admins."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"knowledge base ({self.embedding_model})"

    @property
    def index_models(self) -> list[str]:
        """The models new chunks are embedded with: the serving one, and the next one."""
        return [self.embedding_model] + (
            [self.next_embedding_model] if self.next_embedding_model else []
        )


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    title = models.CharField(max_length=300)
    filename = models.CharField(max_length=150)
    kind = models.CharField(max_length=16)
    content_hash = models.CharField(max_length=64, unique=True)
    size_bytes = models.PositiveBigIntegerField()
    file = models.FileField(upload_to=document_upload_path, max_length=400)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    flags = models.JSONField(default=list, blank=True, help_text="Prompt-injection findings.")
    warnings = models.JSONField(
        default=list, blank=True, help_text="Content left out at extraction, for the uploader."
    )
    chunk_count = models.PositiveIntegerField(default=0)
    embedding_model = models.CharField(max_length=80, blank=True)
    tags = ArrayField(models.CharField(max_length=TAG_MAX_CHARS), default=list, blank=True)
    uploaded_by_email = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [GinIndex(fields=["tags"], name="document_tags_gin")]

    def __str__(self) -> str:
        return self.title


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveSmallIntegerField()
    page = models.PositiveIntegerField(null=True, blank=True)
    heading_path = models.JSONField(default=list, blank=True)
    start = models.PositiveIntegerField(help_text="Character offset in the extracted text.")
    end = models.PositiveIntegerField()
    flags = models.JSONField(default=list, blank=True)
    # sha256 of `text`: the same text embedded by the same model is never embedded twice.
    text_hash = models.CharField(max_length=64, db_index=True)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    embedding_model = models.CharField(max_length=80)
    embedding_dimensions = models.PositiveSmallIntegerField()
    search_vector = models.GeneratedField(
        expression=SearchVector("text", config="english"),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["document", "index"]
        constraints = [
            # One row per position and model: during a model switch a chunk has two.
            models.UniqueConstraint(
                fields=["document", "index", "embedding_model"], name="chunk_position_unique"
            )
        ]
        indexes = [
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(fields=["search_vector"], name="chunk_search_gin"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.index}"
