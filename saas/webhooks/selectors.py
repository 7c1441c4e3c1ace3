"""Reads for webhooks. Endpoints and deliveries live in the tenant's schema; another tenant's
id answers exactly like a missing one."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.http import Http404
from django_tenants.utils import tenant_context

from saas.webhooks.models import WebhookDelivery, WebhookEndpoint
from tenants.models import Tenant


def webhook_by_public_id(*, tenant: Tenant, public_id: uuid.UUID) -> WebhookEndpoint:
    with tenant_context(tenant):
        endpoint = WebhookEndpoint.objects.filter(public_id=public_id).first()
    if endpoint is None:
        raise Http404("No such webhook.")
    return endpoint


def webhooks_for_api(*, tenant: Tenant) -> QuerySet[WebhookEndpoint]:
    """Lazily evaluated: the API runs with the key's tenant schema already active."""
    return WebhookEndpoint.objects.all()


def webhook_deliveries_for_api(
    *, tenant: Tenant, endpoint: WebhookEndpoint
) -> QuerySet[WebhookDelivery]:
    """Lazily evaluated, like `webhooks_for_api`."""
    return WebhookDelivery.objects.filter(endpoint=endpoint).select_related("endpoint")
