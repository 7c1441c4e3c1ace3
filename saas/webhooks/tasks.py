"""Webhook tasks. Deliveries are queued from the tenant's context and run in it (queue `bulk`;
test pings on `interactive`); the beat tasks run on the public schema and visit each tenant."""

from __future__ import annotations

from celery import shared_task
from django.db import connection

from saas.webhooks.delivery import (
    webhook_deliveries_prune,
    webhook_deliveries_queue_due,
    webhook_delivery_attempt,
)
from tenants.models import Tenant

# An attempt is a DNS lookup plus one request with WEBHOOK_TIMEOUT_S (at most 30 s) per phase;
# the hard limit stays below the claim's lease (services.ATTEMPT_LEASE_S).
SOFT_TIME_LIMIT_S = 75
TIME_LIMIT_S = 90


@shared_task(soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S)
def webhook_deliver_task(*, delivery_id: int) -> None:
    webhook_delivery_attempt(tenant=connection.tenant, delivery_id=delivery_id)


@shared_task(soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S)
def webhook_ping_task(*, delivery_id: int) -> None:
    """The same as webhook_deliver_task, on the interactive queue (someone is waiting)."""
    webhook_delivery_attempt(tenant=connection.tenant, delivery_id=delivery_id)


@shared_task
def webhook_deliveries_due_task() -> None:
    """Every minute (beat): queue every tenant's due deliveries."""
    for tenant in Tenant.objects.filter(status=Tenant.Status.ACTIVE):
        webhook_deliveries_queue_due(tenant=tenant)


@shared_task
def webhook_deliveries_prune_task() -> None:
    """Daily (beat): drop finished deliveries past their retention."""
    for tenant in Tenant.objects.exclude(status=Tenant.Status.SYSTEM):
        webhook_deliveries_prune(tenant=tenant)
