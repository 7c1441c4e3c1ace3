"""Reads for tenant AI settings."""

from __future__ import annotations

from django_tenants.utils import tenant_context

from ai.models import ProviderKey
from tenants.models import Tenant


def provider_keys_of(*, tenant: Tenant) -> list[ProviderKey]:
    with tenant_context(tenant):
        return list(ProviderKey.objects.order_by("provider"))


def ai_status_for(*, tenant: Tenant) -> dict[str, object]:
    """What the tenant's pages say about AI: switched off (and why), or answering in local
    extractive mode because no model provider is configured."""
    from ai.gateway.config import config_snapshot
    from ai.gateway.errors import GatewayError, ModelNotAllowed
    from ai.gateway.plan import feature_switch
    from ai.gateway.routing import route_targets, tenant_credentials
    from ai.gateway.types import Caller

    snapshot = config_snapshot()
    off_reason = feature_switch(snapshot, Caller(tenant, "answer", "status"))
    try:
        targets = route_targets(
            snapshot=snapshot, tenant=tenant, feature="answer", kind="chat",
            byok=tenant_credentials(tenant, snapshot.generation),
        )  # fmt: skip
        local_only = all(t.model.provider == "local" for t in targets)
    except ModelNotAllowed:
        local_only, off_reason = False, off_reason or "No AI model is available to you."
    except GatewayError as error:  # e.g. a stored key that cannot be decrypted
        local_only, off_reason = False, off_reason or error.message
    return {"off_reason": off_reason, "local_only": local_only}
