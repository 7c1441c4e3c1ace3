"""Writes for webhooks: endpoints (create, delete, rotate the secret, send a test event) and
events (`webhook_emit`). A delivery is stored in the emitting transaction and queued after it
commits; saas/webhooks/delivery.py sends it and retries."""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.http import Http404
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.secrets import secret_encrypt, secret_rotate
from saas.audit.services import audit_record
from saas.webhooks.delivery import delivery_enqueue
from saas.webhooks.events import ALL_EVENTS, EVENT_TYPES, SUBSCRIBABLE
from saas.webhooks.models import DESCRIPTION_MAX_CHARS, WebhookDelivery, WebhookEndpoint
from saas.webhooks.network import endpoint_url_check
from saas.webhooks.signing import body_serialise, secret_generate
from tenants.models import APIKey, Tenant, User
from tenants.selectors import membership_for

# --- endpoints -------------------------------------------------------------------------------


def _authorise(tenant: Tenant, user: User | None, api_key: APIKey | None) -> str:
    """Who is acting (for created_by): a key of this tenant with the webhooks scope, or an
    admin of the tenant. Raises PermissionDenied otherwise."""
    if api_key is not None:
        if api_key.tenant_id != tenant.pk or APIKey.Scope.WEBHOOKS not in api_key.scopes:
            raise PermissionDenied("This API key may not manage webhooks.")
        return f"API key “{api_key.name}”"
    membership = membership_for(tenant=tenant, user=user) if user else None
    if user is None or membership is None or not membership.is_admin:
        raise PermissionDenied("Only admins and owners manage webhooks.")
    return user.email


def _audit(
    tenant: Tenant,
    action: str,
    endpoint: WebhookEndpoint,
    user: User | None,
    api_key: APIKey | None,
    **data: Any,
) -> None:
    # The host, not the URL: a query string often carries the receiver's own token.
    host = urlsplit(endpoint.url).hostname or ""
    audit_record(
        tenant=tenant, action=action, actor=user, target=str(endpoint.public_id),
        data={"host": host, **data, **({"api_key": api_key.key_id} if api_key else {})},
    )  # fmt: skip


def _events_clean(events: list[str] | None) -> list[str]:
    chosen = set(events or [ALL_EVENTS])
    unknown = sorted(chosen - set(SUBSCRIBABLE))
    if unknown:
        raise ValidationError(
            f"Unknown event type(s): {', '.join(unknown)[:200]}. "
            f"Choose among {', '.join(SUBSCRIBABLE)}."
        )
    return [ALL_EVENTS] if ALL_EVENTS in chosen else sorted(chosen)


def webhook_create(
    *,
    tenant: Tenant,
    url: str,
    description: str = "",
    events: list[str] | None = None,
    user: User | None = None,
    api_key: APIKey | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint for `events` (empty or `*`: every event type). Returns it and its
    signing secret, which is stored encrypted and never shown again. Raises ValidationError
    (messages per field: url, events, description; the endpoint limit as a non-field error)
    and PermissionDenied."""
    created_by = _authorise(tenant, user, api_key)
    errors: dict[str, list[str]] = {}
    try:
        endpoint_url_check(url)
    except ValidationError as error:
        errors["url"] = error.messages
    try:
        subscribed = _events_clean(events)
    except ValidationError as error:
        errors["events"] = error.messages
    if len(description) > DESCRIPTION_MAX_CHARS:
        errors["description"] = [f"Use at most {DESCRIPTION_MAX_CHARS} characters."]
    if errors:
        raise ValidationError(errors)
    secret = secret_generate()
    with tenant_context(tenant), transaction.atomic():
        # One creation at a time per tenant (the table is the tenant's own), so parallel
        # requests cannot pass the limit together.
        with connection.cursor() as cursor:
            table = connection.ops.quote_name(WebhookEndpoint._meta.db_table)
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        if WebhookEndpoint.objects.count() >= settings.WEBHOOK_MAX_ENDPOINTS:
            raise ValidationError(
                {
                    NON_FIELD_ERRORS: [
                        f"This workspace already has {settings.WEBHOOK_MAX_ENDPOINTS} webhook "
                        "endpoints, the most allowed. Delete one first."
                    ]
                }
            )
        endpoint = WebhookEndpoint.objects.create(
            url=url, description=description, events=subscribed,
            encrypted_secret=secret_encrypt(secret), created_by=created_by,
        )  # fmt: skip
        _audit(tenant, "webhook.created", endpoint, user, api_key, events=subscribed)
    return endpoint, secret


def webhook_delete(
    *,
    tenant: Tenant,
    endpoint: WebhookEndpoint,
    user: User | None = None,
    api_key: APIKey | None = None,
) -> None:
    """Remove the endpoint and its delivery history; its queued attempts find nothing."""
    _authorise(tenant, user, api_key)
    with tenant_context(tenant), transaction.atomic():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()
        _audit(tenant, "webhook.deleted", endpoint, user, api_key)


def webhook_secret_rotate(
    *,
    tenant: Tenant,
    endpoint: WebhookEndpoint,
    user: User | None = None,
    api_key: APIKey | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new signing secret, returned this once. For WEBHOOK_SECRET_GRACE_S every delivery is
    signed with the new and the replaced secret (two signatures), so the receiver can switch
    without rejecting an event; a secret rotated before that is dropped at once."""
    _authorise(tenant, user, api_key)
    secret = secret_generate()
    with tenant_context(tenant), transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().filter(pk=endpoint.pk).first()
        if locked is None:  # deleted meanwhile
            raise Http404("No such webhook.")
        grace = settings.WEBHOOK_SECRET_GRACE_S
        locked.encrypted_previous_secret = locked.encrypted_secret if grace else ""
        locked.previous_secret_expires_at = (
            timezone.now() + timedelta(seconds=grace) if grace else None
        )
        locked.encrypted_secret = secret_encrypt(secret)
        locked.save(
            update_fields=[
                "encrypted_secret", "encrypted_previous_secret", "previous_secret_expires_at"
            ]
        )  # fmt: skip
        _audit(tenant, "webhook.secret_rotated", locked, user, api_key)
    return locked, secret


def webhook_secrets_reencrypt(*, tenant: Tenant) -> int:
    """Re-encrypt the tenant's signing secrets with the newest AI_ENCRYPTION_KEYS entry."""
    with tenant_context(tenant), transaction.atomic():
        endpoints = list(WebhookEndpoint.objects.select_for_update())
        for endpoint in endpoints:
            endpoint.encrypted_secret = secret_rotate(endpoint.encrypted_secret)
            if endpoint.encrypted_previous_secret:
                endpoint.encrypted_previous_secret = secret_rotate(
                    endpoint.encrypted_previous_secret
                )
            endpoint.save(update_fields=["encrypted_secret", "encrypted_previous_secret"])
    return len(endpoints)


# --- events ----------------------------------------------------------------------------------


def _deliveries_create(
    tenant: Tenant, endpoints: list[WebhookEndpoint], event_type: str, data: dict[str, Any]
) -> list[WebhookDelivery]:
    """In the caller's transaction (and tenant schema); sent once it commits. Queueing is
    `robust`: with the broker down the request still succeeds and the beat sends it later."""
    now = timezone.now()
    payload = {
        "type": event_type,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    body_serialise(payload)  # not JSON (a programming error): raise here, not in the worker
    event_id = f"evt_{uuid.uuid4().hex}"
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint,
            event_id=event_id,
            event_type=event_type,
            payload=payload,
            next_attempt_at=now,
            queued_at=now,
        )
        for endpoint in endpoints
    )
    for delivery in deliveries:
        transaction.on_commit(
            partial(delivery_enqueue, tenant, delivery.pk, event_type), robust=True
        )
    return deliveries


def webhook_emit(*, tenant: Tenant, event_type: str, data: dict[str, Any]) -> list[WebhookDelivery]:
    """Send event `event_type` (a key of saas.webhooks.events.EVENT_TYPES) with `data` to each
    of `tenant`'s active endpoints subscribed to it. `data` must be plain JSON and hold nothing
    secret (it is stored and shown in the delivery log). The deliveries are stored in the
    caller's transaction and sent after it commits: none if it rolls back. Raises ValueError
    for an unknown event type and TypeError for data that is not JSON."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"Unknown webhook event type {event_type!r}.")
    with tenant_context(tenant), transaction.atomic():
        endpoints = list(
            WebhookEndpoint.objects.filter(is_active=True).filter(
                Q(events__contains=[event_type]) | Q(events__contains=[ALL_EVENTS])
            )
        )
        return _deliveries_create(tenant, endpoints, event_type, data)


def webhook_test(
    *,
    tenant: Tenant,
    endpoint: WebhookEndpoint,
    user: User | None = None,
    api_key: APIKey | None = None,
) -> WebhookDelivery:
    """Queue a `ping` event to this endpoint (whatever it subscribes to)."""
    _authorise(tenant, user, api_key)
    with tenant_context(tenant), transaction.atomic():
        data = {"webhook_id": str(endpoint.public_id), "message": "A test event from Atrium."}
        (delivery,) = _deliveries_create(tenant, [endpoint], "ping", data)
    return delivery
