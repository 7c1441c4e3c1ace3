"""API keys: created by tenant admins (or `manage.py create_api_key`), shown once, stored as a
hash, revoked at once. Every action is in the tenant's audit log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from saas.audit.services import audit_record
from tenants.models import APIKey, Tenant, User
from tenants.selectors import membership_for

PREFIX = "atr_live_"
LAST_USED_RESOLUTION = timedelta(minutes=1)  # at most one write per key per minute


def api_key_hash(raw: str) -> str:
    # The secret is 256 random bits: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(raw.encode()).hexdigest()


def _require_admin(tenant: Tenant, acting_user: User | None) -> None:
    if acting_user is None:
        return  # operators, from the command line
    membership = membership_for(tenant=tenant, user=acting_user)
    if membership is None or not membership.is_admin:
        raise PermissionDenied("Only admins and owners manage API keys.")


def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    scopes: list[str],
    acting_user: User | None = None,
    expires_at: datetime | None = None,
) -> tuple[APIKey, str]:
    """A new key and its secret (`atr_live_<id>_<secret>`), which is never shown again."""
    _require_admin(tenant, acting_user)
    name = name.strip()
    if not name:
        raise ValidationError("Give the key a name, e.g. the app that will use it.")
    unknown = sorted(set(scopes) - set(APIKey.Scope.values))
    if unknown or not scopes:
        raise ValidationError(
            f"Choose scopes among {', '.join(APIKey.Scope.values)}"
            + (f" (unknown: {', '.join(unknown)})." if unknown else ".")
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("The expiry date must be in the future.")
    key_id = secrets.token_hex(6)
    raw = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        key = APIKey.objects.create(
            tenant=tenant, name=name[:100], key_id=key_id, secret_hash=api_key_hash(raw),
            scopes=sorted(set(scopes)), created_by=acting_user, expires_at=expires_at,
        )  # fmt: skip
        audit_record(
            tenant=tenant, action="api_key.created", actor=acting_user, target=key.name,
            data={"key_id": key_id, "scopes": key.scopes},
        )  # fmt: skip
    return key, raw


def api_key_revoke(*, key: APIKey, acting_user: User | None = None) -> None:
    """Revoked keys are refused from the next request on. Revoking twice is harmless."""
    _require_admin(key.tenant, acting_user)
    with transaction.atomic():
        changed = APIKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if changed:
            audit_record(
                tenant=key.tenant, action="api_key.revoked", actor=acting_user, target=key.name,
                data={"key_id": key.key_id},
            )  # fmt: skip


def api_key_touch(*, key: APIKey) -> None:
    """Record use, at most once per LAST_USED_RESOLUTION (no write on every request)."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        APIKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
