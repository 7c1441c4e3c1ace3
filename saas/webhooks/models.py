"""Webhook endpoints and their deliveries. Tenant schema: a tenant's endpoints, secrets and
delivery history live with its data and cannot be read from another tenant's schema."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models

URL_MAX_CHARS = 2000
DESCRIPTION_MAX_CHARS = 500
ERROR_MAX_CHARS = 200


class WebhookEndpoint(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    url = models.CharField(max_length=URL_MAX_CHARS)
    description = models.CharField(max_length=DESCRIPTION_MAX_CHARS, blank=True)
    events = ArrayField(
        models.CharField(max_length=64), default=list, help_text='Event types; ["*"] = all.'
    )
    # The signing secret (`whsec_...`), encrypted with AI_ENCRYPTION_KEYS (ai.secrets). After a
    # rotation the previous one keeps signing too, until previous_secret_expires_at.
    encrypted_secret = models.TextField()
    encrypted_previous_secret = models.TextField(blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=254, blank=True, help_text="API key or member.")

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint: sent, and retried with backoff until it succeeds or runs
    out of attempts. `next_attempt_at` is when it is due (or, while an attempt runs, when that
    attempt counts as lost); empty once it is finished."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.CharField(max_length=64, help_text="The webhook-id header; same on retries.")
    event_type = models.CharField(max_length=64)
    payload = models.JSONField(help_text="The body sent: type, timestamp, data.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=ERROR_MAX_CHARS, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="Last handed to the broker.")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_delivery_once")
        ]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_recent"),
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_delivery_due",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} -> {self.endpoint_id} ({self.status})"
