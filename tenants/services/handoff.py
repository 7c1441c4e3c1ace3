"""Signing a user in on another host. Sessions are bound to the host (and tenant) that created
them, so moving from the public site to a tenant, or between tenants, goes through a short-lived,
single-use signed link that the target host redeems."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core import signing
from django.core.cache import cache

from tenants.models import Membership, Tenant, User
from tenants.slugs import domain_for, url_for_host

_SALT = "atrium.login-handoff"


def login_handoff_url(*, user: User, tenant: Tenant) -> str:
    token = signing.dumps(
        {"user": user.pk, "tenant": tenant.schema_name, "nonce": secrets.token_urlsafe(16)},
        salt=_SALT,
    )
    return url_for_host(domain_for(tenant.slug), f"/auth/handoff/{token}/")


def login_handoff_redeem(*, tenant: Tenant, token: str) -> User | None:
    """The member the token signs in on `tenant`, or None if the token is bad, expired, used,
    for another tenant, or the user is no longer an active member."""
    try:
        payload = signing.loads(token, salt=_SALT, max_age=settings.LOGIN_HANDOFF_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("tenant") != tenant.schema_name:
        return None
    nonce = str(payload.get("nonce", ""))
    if not nonce or not cache.add(f"login-handoff:{nonce}", 1, settings.LOGIN_HANDOFF_MAX_AGE):
        return None  # replayed
    membership = (
        Membership.objects.filter(tenant=tenant, user_id=payload.get("user"), user__is_active=True)
        .select_related("user")
        .first()
    )
    return membership.user if membership else None
