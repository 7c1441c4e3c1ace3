"""Sending deliveries, and retrying them.

Deliveries are rows first and requests second. Each attempt claims its row with a conditional
update (pending and due) that also pushes the due time past the attempt's longest run, so a
duplicate task never sends twice and a delivery whose worker died comes due again. Retries back
off exponentially with jitter; one due within minutes is queued with a countdown, later ones
(and anything whose queueing was lost) are queued by the `webhook_deliveries_due_task` beat."""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.secrets import secret_decrypt
from saas.lib.tasks import enqueue_for
from saas.webhooks.models import ERROR_MAX_CHARS, WebhookDelivery, WebhookEndpoint
from saas.webhooks.network import AddressRefused, DeliveryFailed, signed_post
from saas.webhooks.signing import body_serialise, signature_headers
from tenants.models import Tenant

logger = logging.getLogger(__name__)

PENDING, SUCCEEDED, FAILED = WebhookDelivery.Status
# How long a claimed attempt holds its delivery: longer than the task's hard time limit
# (saas/webhooks/tasks.py), so only an attempt whose worker died loses it.
ATTEMPT_LEASE_S = 120
# Retries due sooner than this are queued with a Celery countdown; later ones wait in the
# database (a countdown past the broker's visibility timeout would be delivered again).
COUNTDOWN_MAX_S = 300
# A queued delivery that has not run after this long (a lost message, a dead worker) is queued
# again by the beat; duplicates are harmless (the claim), this only bounds them.
REQUEUE_AFTER_S = 600
BACKOFF_FACTOR = 4
DUE_BATCH = 500


def delivery_enqueue(tenant: Tenant, delivery_id: int, event_type: str, countdown: float = 0):
    """Queue one attempt in the tenant's schema (pings on the interactive queue)."""
    from saas.webhooks.tasks import webhook_deliver_task, webhook_ping_task

    task = webhook_ping_task if event_type == "ping" else webhook_deliver_task
    enqueue_for(tenant, task, countdown=countdown or None, delivery_id=delivery_id)


def _signing_secrets(endpoint: WebhookEndpoint) -> list[str]:
    secrets = [secret_decrypt(endpoint.encrypted_secret)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.encrypted_previous_secret and expires and expires > timezone.now():
        secrets.append(secret_decrypt(endpoint.encrypted_previous_secret))
    return secrets


def _send(delivery: WebhookDelivery) -> tuple[int | None, str, bool]:
    """One request: (status code, error, worth retrying). Errors name what happened, never a
    secret or the response body."""
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        return None, "The endpoint is disabled.", False
    try:
        signing_secrets = _signing_secrets(endpoint)
    except ValueError:
        return None, "The signing secret cannot be decrypted (AI_ENCRYPTION_KEYS).", False
    body = body_serialise(delivery.payload)
    headers = signature_headers(
        signing_secrets=signing_secrets, event_id=delivery.event_id,
        timestamp=int(time.time()), body=body,
    )  # fmt: skip
    try:
        status_code = signed_post(url=endpoint.url, body=body, headers=headers)
    except AddressRefused as error:
        return None, f"Refused: {error}", False
    except DeliveryFailed as error:
        return None, str(error), True
    if 200 <= status_code < 300:
        return status_code, "", False
    return status_code, f"The endpoint answered HTTP {status_code}.", True


def _backoff_s(attempts: int) -> float:
    """Before attempt `attempts + 1`: base, 4x base, 16x base... up to the cap, +-20%."""
    delay = min(
        settings.WEBHOOK_BACKOFF_BASE_S * BACKOFF_FACTOR ** (attempts - 1),
        settings.WEBHOOK_BACKOFF_MAX_S,
    )
    return delay * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not a secret)


def webhook_delivery_attempt(*, tenant: Tenant, delivery_id: int) -> None:
    """Make one attempt at a delivery that is pending and due; do nothing for one that is
    gone, finished, not yet due or being attempted by another run. A 2xx answer succeeds it;
    anything else schedules the next attempt, or fails it after WEBHOOK_MAX_ATTEMPTS (or at
    once when retrying cannot help: a refused address, a disabled endpoint)."""
    with tenant_context(tenant):
        now = timezone.now()
        claimed = WebhookDelivery.objects.filter(
            pk=delivery_id, status=PENDING, next_attempt_at__lte=now
        ).update(
            attempts=F("attempts") + 1, next_attempt_at=now + timedelta(seconds=ATTEMPT_LEASE_S)
        )
        if not claimed:
            return
        delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
        if delivery is None:  # its endpoint was deleted meanwhile
            return
        status_code, error, retry = _send(delivery)
        done = timezone.now()
        fields: dict[str, Any] = {
            "last_status_code": status_code,
            "last_error": error[:ERROR_MAX_CHARS],
        }
        delay = None
        if not error:
            fields.update(status=SUCCEEDED, delivered_at=done, next_attempt_at=None)
        elif not retry or delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            fields.update(status=FAILED, next_attempt_at=None)
        else:
            delay = _backoff_s(delivery.attempts)
            fields.update(next_attempt_at=done + timedelta(seconds=delay))
            if delay <= COUNTDOWN_MAX_S:
                fields.update(queued_at=done)
        WebhookDelivery.objects.filter(pk=delivery_id, status=PENDING).update(**fields)
    logger.info(
        "webhook delivery %s (%s, attempt %d): %s",
        delivery.event_id, delivery.event_type, delivery.attempts,
        error or fields.get("status", "retry"),
    )  # fmt: skip
    if delay is not None and delay <= COUNTDOWN_MAX_S:
        transaction.on_commit(
            partial(delivery_enqueue, tenant, delivery_id, delivery.event_type, delay),
            robust=True,
        )


def webhook_deliveries_queue_due(*, tenant: Tenant) -> int:
    """Queue the tenant's deliveries that are due and not queued recently: retries too far off
    for a countdown, attempts lost with their worker, sends lost with the broker."""
    now = timezone.now()
    with tenant_context(tenant), transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=PENDING, next_attempt_at__lte=now)
            .filter(
                Q(queued_at__isnull=True)
                | Q(queued_at__lte=now - timedelta(seconds=REQUEUE_AFTER_S))
            )
            .order_by("next_attempt_at")
            .values_list("pk", "event_type")[:DUE_BATCH]
        )
        WebhookDelivery.objects.filter(pk__in=[pk for pk, _ in due]).update(queued_at=now)
        for pk, event_type in due:
            transaction.on_commit(partial(delivery_enqueue, tenant, pk, event_type), robust=True)
    return len(due)


def webhook_deliveries_prune(*, tenant: Tenant) -> int:
    """Delete finished deliveries older than WEBHOOK_DELIVERY_RETENTION_DAYS."""
    cutoff = timezone.now() - timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS)
    with tenant_context(tenant):
        deleted, _ = (
            WebhookDelivery.objects.exclude(status=PENDING).filter(created_at__lt=cutoff).delete()
        )
    return deleted
