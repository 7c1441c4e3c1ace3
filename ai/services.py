"""Writes for tenant AI settings: the tenant's own provider keys (BYOK)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django_tenants.utils import tenant_context

from ai.catalog.models import Provider
from ai.gateway.config import config_invalidate
from ai.models import ProviderKey
from ai.secrets import secret_encrypt, secret_rotate
from saas.audit.services import audit_record
from tenants.models import Tenant, User
from tenants.selectors import membership_for

BYOK_PROVIDERS = (Provider.OPENAI, Provider.ANTHROPIC, Provider.OPENAI_COMPATIBLE)


def _require_admin(tenant: Tenant, user: User) -> None:
    membership = membership_for(tenant=tenant, user=user)
    if membership is None or not membership.is_admin:
        raise PermissionDenied("Only admins and owners manage provider keys.")


@transaction.atomic
def provider_key_set(
    *, tenant: Tenant, acting_user: User, provider: str, api_key: str, base_url: str = ""
) -> ProviderKey:
    """Add or replace the tenant's key for `provider` (stored encrypted, shown masked)."""
    _require_admin(tenant, acting_user)
    api_key = api_key.strip()
    if provider not in BYOK_PROVIDERS:
        raise ValidationError("Pick a provider.", code="invalid")
    if len(api_key) < 8 or any(c.isspace() for c in api_key):
        raise ValidationError("That does not look like an API key.", code="invalid")
    if provider == Provider.OPENAI_COMPATIBLE and not base_url:
        raise ValidationError("An OpenAI-compatible server needs its base URL.", code="required")
    with tenant_context(tenant):
        key, created = ProviderKey.objects.update_or_create(
            provider=provider,
            defaults={
                "encrypted_key": secret_encrypt(api_key),
                "last4": api_key[-4:],
                "base_url": base_url,
                "created_by_email": acting_user.email,
            },
        )
    audit_record(
        tenant=tenant, action="provider_key.added" if created else "provider_key.replaced",
        actor=acting_user, target=provider, data={"last4": key.last4},
    )  # fmt: skip
    transaction.on_commit(config_invalidate)  # every process drops its decrypted copy
    return key


@transaction.atomic
def provider_key_remove(*, tenant: Tenant, acting_user: User, provider: str) -> bool:
    _require_admin(tenant, acting_user)
    with tenant_context(tenant):
        deleted, _ = ProviderKey.objects.filter(provider=provider).delete()
    if deleted:
        audit_record(
            tenant=tenant, action="provider_key.removed", actor=acting_user, target=provider
        )
        transaction.on_commit(config_invalidate)
    return bool(deleted)


def provider_keys_rotate(*, tenant: Tenant) -> int:
    """Re-encrypt the tenant's keys with the newest AI_ENCRYPTION_KEYS entry."""
    with tenant_context(tenant), transaction.atomic():
        keys = list(ProviderKey.objects.select_for_update())
        for key in keys:
            key.encrypted_key = secret_rotate(key.encrypted_key)
            key.save(update_fields=["encrypted_key", "updated_at"])
    return len(keys)
