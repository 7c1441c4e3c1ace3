"""Inviting people by email. The link is `/invitations/<token>/` on the tenant's host; the token
is a signature of the invitation's public id (`invitation_token`), so it can be rebuilt by the
task that sends the email and nothing secret is stored or queued."""

from __future__ import annotations

import uuid
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from saas.audit.services import audit_record
from tenants.models import Invitation, Membership, Role, Tenant, User
from tenants.slugs import domain_for, url_for_host

_SALT = "atrium.invitation"


class InvitationUnusable(Exception):
    """The link is malformed, for another tenant, expired, revoked or already used."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps(str(invitation.public_id), salt=_SALT)


def invitation_url(invitation: Invitation) -> str:
    return url_for_host(
        domain_for(invitation.tenant.slug), f"/invitations/{invitation_token(invitation)}/"
    )


def invitation_from_token(*, tenant: Tenant, token: str) -> Invitation:
    """The open invitation of `tenant` that `token` names, or InvitationUnusable saying why."""
    try:
        public_id = uuid.UUID(signing.loads(token, salt=_SALT))
    except (signing.BadSignature, ValueError, TypeError):
        raise InvitationUnusable("This invitation link is not valid.") from None
    invitation = (
        Invitation.objects.filter(tenant=tenant, public_id=public_id)
        .select_related("tenant", "invited_by")
        .first()
    )
    if invitation is None:
        raise InvitationUnusable("This invitation link is not valid.")
    if invitation.revoked_at:
        raise InvitationUnusable("This invitation was withdrawn. Ask for a new one.")
    if invitation.accepted_at:
        raise InvitationUnusable("This invitation has already been used. Sign in instead.")
    if invitation.expires_at <= timezone.now():
        raise InvitationUnusable("This invitation has expired. Ask for a new one.")
    return invitation


@transaction.atomic
def invitation_create(*, tenant: Tenant, acting_user: User, email: str, role: str) -> Invitation:
    """Invite `email` with `role`; replaces an open invitation to the same address."""
    from tenants.tasks import invitation_send

    email = email.strip().lower()
    validate_email(email)
    if role not in Role.values:
        raise ValidationError("Unknown role.", code="invalid")
    acting = Membership.objects.filter(tenant=tenant, user=acting_user).first()
    if acting is None or not acting.is_admin:
        raise PermissionDenied("Only admins and owners can invite.")
    if role == Role.OWNER and not acting.is_owner:
        raise PermissionDenied("Only owners can invite owners.")
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise ValidationError("This person is already a member.", code="already_member")
    now = timezone.now()
    Invitation.objects.filter(
        tenant=tenant, email=email, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=now)
    invitation = Invitation.objects.create(
        tenant=tenant,
        email=email,
        role=role,
        invited_by=acting_user,
        expires_at=now + timedelta(days=settings.INVITATION_MAX_AGE_DAYS),
    )
    audit_record(
        tenant=tenant, action="invitation.created", actor=acting_user, target=email,
        data={"role": role},
    )  # fmt: skip
    transaction.on_commit(lambda: invitation_send.delay(invitation_id=invitation.pk))
    return invitation


@transaction.atomic
def invitation_revoke(*, tenant: Tenant, acting_user: User, invitation: Invitation) -> None:
    acting = Membership.objects.filter(tenant=tenant, user=acting_user).first()
    if acting is None or not acting.is_admin or invitation.tenant_id != tenant.pk:
        raise PermissionDenied("Only admins and owners can withdraw invitations.")
    updated = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    if updated:
        audit_record(
            tenant=tenant, action="invitation.revoked", actor=acting_user, target=invitation.email
        )


def _claim(invitation: Invitation, user: User) -> None:
    """Mark the invitation used; exactly one concurrent accept wins."""
    claimed = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(accepted_at=timezone.now(), accepted_by=user)
    if claimed != 1:
        raise InvitationUnusable("This invitation has already been used. Sign in instead.")


def _join(invitation: Invitation, user: User) -> Membership:
    _claim(invitation, user)
    try:
        with transaction.atomic():
            membership = Membership.objects.create(
                user=user, tenant=invitation.tenant, role=invitation.role
            )
    except IntegrityError:
        membership = Membership.objects.get(user=user, tenant=invitation.tenant)
    # Following the emailed link proves the address.
    EmailAddress.objects.update_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
    audit_record(
        tenant=invitation.tenant, action="invitation.accepted", actor=user, target=user.email,
        data={"role": invitation.role},
    )  # fmt: skip
    return membership


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """Attach an existing, signed-in account. The account's email must be the invited one."""
    if user.email.lower() != invitation.email.lower():
        raise InvitationUnusable(
            f"This invitation was sent to {invitation.email}. Sign in with that address."
        )
    return _join(invitation, user)


@transaction.atomic
def invitation_accept_new_account(
    *, invitation: Invitation, password: str, first_name: str = "", last_name: str = ""
) -> Membership:
    """Create the invited person's account and join. Refused if the address already has one."""
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise InvitationUnusable("An account with this address exists. Sign in to accept.")
    user = User.objects.create_user(
        invitation.email, password, first_name=first_name, last_name=last_name
    )
    return _join(invitation, user)
