"""Tenancy tasks. Queued from a tenant's context, they run in that tenant's schema."""

from __future__ import annotations

from celery import shared_task

from tenants.emails import invitation_email_send


@shared_task(max_retries=3, default_retry_delay=30)
def invitation_send(*, invitation_id: int) -> None:
    invitation_email_send(invitation_id=invitation_id)
