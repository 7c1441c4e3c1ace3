"""Reading the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet
from django_tenants.utils import tenant_context

from saas.audit.models import AuditEvent

if TYPE_CHECKING:
    from tenants.models import Tenant


def audit_events_for(*, tenant: Tenant, limit: int = 50) -> list[AuditEvent]:
    with tenant_context(tenant):
        queryset: QuerySet[AuditEvent] = AuditEvent.objects.all()
        return list(queryset[:limit])
