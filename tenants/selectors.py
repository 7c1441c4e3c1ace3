"""Reads on public-schema tenancy tables. Every query is scoped by the tenant it is asked about."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404
from django_tenants.utils import get_public_schema_name

from tenants.models import APIKey, Domain, Invitation, Membership, Tenant, User


def tenant_for_hostname(hostname: str) -> Tenant:
    """The tenant a host name belongs to: the base domain is the public site, every other
    known domain its tenant's site. Raises Tenant.DoesNotExist for unknown hosts and for the
    internal template tenant. Used for HTTP requests and websockets alike."""
    if hostname in (settings.BASE_DOMAIN, f"www.{settings.BASE_DOMAIN}"):
        return Tenant.objects.get(schema_name=get_public_schema_name())
    domain = Domain.objects.select_related("tenant").filter(domain=hostname).first()
    if domain is None or domain.tenant.status == Tenant.Status.SYSTEM:
        raise Tenant.DoesNotExist(hostname)
    return domain.tenant


def membership_for(*, tenant: Tenant, user: User) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.filter(tenant=tenant, user=user).select_related("tenant").first()


def memberships_of(*, user: User) -> QuerySet[Membership]:
    """The active tenants a user belongs to, for the switcher and the post-login chooser."""
    return (
        Membership.objects.filter(user=user, tenant__status=Tenant.Status.ACTIVE)
        .select_related("tenant")
        .order_by("tenant__name")
    )


def members_of(*, tenant: Tenant) -> QuerySet[Membership]:
    return Membership.objects.filter(tenant=tenant).select_related("user").order_by("created_at")


def membership_in(*, tenant: Tenant, membership_id: int) -> Membership:
    """A membership of `tenant`; another tenant's id answers exactly like a missing one."""
    membership = Membership.objects.filter(tenant=tenant, pk=membership_id).first()
    if membership is None:
        raise Http404("No such member.")
    return membership


def open_invitations_of(*, tenant: Tenant) -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True
    ).select_related("invited_by")


def invitation_in(*, tenant: Tenant, invitation_id: int) -> Invitation:
    invitation = Invitation.objects.filter(tenant=tenant, pk=invitation_id).first()
    if invitation is None:
        raise Http404("No such invitation.")
    return invitation


def tenant_by_slug(*, slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug, status=Tenant.Status.ACTIVE).first()


def user_by_email(*, email: str) -> User | None:
    return User.objects.filter(email__iexact=email.strip()).first()


def api_key_for_secret(raw: str) -> APIKey | None:
    """The usable key `raw` is, or None: wrong, malformed, revoked, expired, or of a tenant that
    is not active. Callers answer every None the same way (no hint which it was)."""
    import hmac

    from django.utils import timezone

    from tenants.services.api_keys import PREFIX, api_key_hash

    if not raw.startswith(PREFIX) or len(raw) > 200:
        return None
    key_id = raw[len(PREFIX) :].split("_", 1)[0]
    key = APIKey.objects.select_related("tenant").filter(key_id=key_id).first()
    if key is None or not hmac.compare_digest(key.secret_hash, api_key_hash(raw)):
        return None
    if key.revoked_at is not None or key.tenant.status != Tenant.Status.ACTIVE:
        return None
    if key.expires_at is not None and key.expires_at <= timezone.now():
        return None
    return key


def api_keys_of(*, tenant: Tenant) -> QuerySet[APIKey]:
    return APIKey.objects.filter(tenant=tenant).select_related("created_by")


def api_key_in(*, tenant: Tenant, key_pk: int) -> APIKey:
    key = APIKey.objects.filter(tenant=tenant, pk=key_pk).select_related("tenant").first()
    if key is None:
        raise Http404("No such key.")
    return key
