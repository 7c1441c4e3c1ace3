"""Outgoing tenancy emails."""

from __future__ import annotations

from django.core.mail import send_mail
from django.db import connection
from django.template.loader import render_to_string

from saas.audit.services import audit_record
from tenants.models import Invitation
from tenants.services.invitations import invitation_url


def invitation_email_send(*, invitation_id: int) -> None:
    """Email the invitation link; quietly does nothing if the invitation is gone or closed.

    Runs in the schema of the tenant that queued it and only sees that tenant's invitations."""
    invitation = (
        Invitation.objects.filter(
            pk=invitation_id,
            tenant__schema_name=connection.schema_name,
            accepted_at__isnull=True,
            revoked_at__isnull=True,
        )
        .select_related("tenant", "invited_by")
        .first()
    )
    if invitation is None:
        return
    context = {"invitation": invitation, "url": invitation_url(invitation)}
    send_mail(
        subject=f"You are invited to {invitation.tenant.name} on Atrium",
        message=render_to_string("tenants/email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )
    audit_record(tenant=invitation.tenant, action="invitation.sent", target=invitation.email)
