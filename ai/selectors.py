"""Reads for tenant AI settings."""

from __future__ import annotations

from django_tenants.utils import tenant_context

from ai.models import ProviderKey
from tenants.models import Tenant


def provider_keys_of(*, tenant: Tenant) -> list[ProviderKey]:
    with tenant_context(tenant):
        return list(ProviderKey.objects.order_by("provider"))
