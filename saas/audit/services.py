"""Writing the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django_tenants.utils import tenant_context

from saas.audit.models import AuditEvent
from saas.logging import request_id_var

if TYPE_CHECKING:
    from tenants.models import Tenant, User


def audit_record(
    *,
    tenant: Tenant,
    action: str,
    actor: User | None = None,
    target: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to `tenant`'s audit log (in its schema, whatever schema is active now)."""
    with tenant_context(tenant):
        return AuditEvent.objects.create(
            actor_id=actor.pk if actor else None,
            actor_email=actor.email if actor else "",
            action=action,
            target=target,
            data=data or {},
            request_id=request_id_var.get() if request_id_var.get() != "-" else "",
        )
