"""Tenant-schema AI data: the tenant's own provider keys (BYOK), its semantic cache, and
conversations with their messages."""

from __future__ import annotations

import uuid

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


class Conversation(models.Model):
    """A chat thread. One started in the browser belongs to its user (others do not see it);
    one started over the API belongs to the tenant (any of its keys with the chat scope)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    title = models.CharField(max_length=200, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    api_key_id = models.BigIntegerField(
        null=True, blank=True, help_text="The key that started it (API conversations)."
    )
    knowledge_base = models.BooleanField(
        default=False, help_text="Answers come from the knowledge base, with citations."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]

    def __str__(self) -> str:
        return self.title or str(self.public_id)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        GENERATING = "generating", "Generating"
        COMPLETE = "complete", "Complete"
        INCOMPLETE = "incomplete", "Incomplete (the answer was cut off)"
        CANCELLED = "cancelled", "Stopped"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error = models.CharField(max_length=300, blank=True)
    # The gateway call behind an assistant message (its usage ledger row has this request id).
    request_id = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=80, blank=True)
    model_label = models.CharField(max_length=40, blank=True, help_text="e.g. local extractive")
    prompt_version = models.CharField(max_length=80, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    citations = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # One generation at a time per conversation, enforced by the database too.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=models.Q(status="generating"),
                name="one_generation_per_conversation",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


# --- bulk jobs (ai/jobs/) ----------------------------------------------------------------------


class Job(models.Model):
    """Many model calls submitted at once and worked through in the background (queue `bulk`).
    Its counts move with its items, in the same transactions."""

    class Kind(models.TextChoices):
        PROMPTS = "prompts", "Prompts"
        # Over knowledge-base documents (ai/jobs/documents.py): one item per document.
        SUMMARIZE = "summarize", "Summarize documents"
        CLASSIFY = "classify", "Classify documents"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        # Batch mode: the items are at the provider as one batch, polled until it ends.
        SUBMITTED = "submitted", "Submitted to the provider"

    class Mode(models.TextChoices):
        DIRECT = "direct", "Direct (one call per item)"
        BATCH = "batch", "Provider batch (lower price, results within 24 h)"

    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.SUBMITTED)

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PROMPTS)
    model = models.CharField(
        max_length=80, blank=True, help_text="Atrium model key, or the route's."
    )
    system = models.TextField(blank=True)
    instructions = models.TextField(
        blank=True, help_text="Summarize/classify: the client's own words added to each prompt."
    )
    labels = models.JSONField(
        default=list, blank=True, help_text="Classify: the labels each document gets one of."
    )
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.DIRECT)
    # Batch mode (ai/jobs/batch.py): the provider's batch, the Atrium model it was sent to,
    # whether the tenant's own key (BYOK) sent it, and its state as last seen ("submitting"
    # while being sent, "collected" once every result is stored).
    batch_id = models.CharField(max_length=120, blank=True)
    batch_model = models.CharField(max_length=80, blank=True)
    batch_byok = models.BooleanField(default=False)
    batch_status = models.CharField(max_length=32, blank=True)
    total_items = models.PositiveIntegerField(default=0)
    succeeded_items = models.PositiveIntegerField(default=0)
    failed_items = models.PositiveIntegerField(default=0)
    cancelled_items = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    user_id = models.BigIntegerField(null=True, blank=True, help_text="Who submitted it (pages).")
    api_key_id = models.BigIntegerField(
        null=True, blank=True, help_text="The key that submitted it."
    )
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Last time a worker picked the job up: a job active but untouched for long lost its tasks.
    touched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"], name="ai_job_status")]

    def __str__(self) -> str:
        return f"job {self.public_id} ({self.status})"

    @property
    def done_items(self) -> int:
        return self.succeeded_items + self.failed_items + self.cancelled_items

    @property
    def progress(self) -> int:
        """Percent of the items finished (whatever their outcome)."""
        return 100 if not self.total_items else self.done_items * 100 // self.total_items

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class JobItem(models.Model):
    """One prompt of a job: one model call, or a few when retried after a provider outage.
    For a summarize/classify job, the prompt was built from one document at submission."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    custom_id = models.CharField(max_length=64, blank=True, help_text="The client's own id.")
    input = models.TextField()
    # Summarize/classify: the document (its public id; it may since have been deleted), and
    # whether its text was cut to the character budget.
    document_id = models.UUIDField(null=True, blank=True)
    truncated = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    output = models.TextField(blank=True)
    label = models.CharField(max_length=100, blank=True, help_text="Classify: the label given.")
    error = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Model calls made (outcome recorded)."
    )
    claims = models.PositiveSmallIntegerField(default=0, help_text="Times a worker took it.")
    claim_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True, help_text="Retry not before.")
    # The gateway call that produced the outcome (its usage ledger row has this request id).
    request_id = models.CharField(max_length=100, blank=True)
    model = models.CharField(max_length=80, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_micros = models.BigIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="ai_job_item_index"),
        ]
        indexes = [models.Index(fields=["job", "status"], name="ai_job_item_status")]

    def __str__(self) -> str:
        return f"item {self.index} of {self.job_id} ({self.status})"
