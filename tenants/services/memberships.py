"""Changing roles and removing members, with the rules in one place:

- admins and owners manage members; only owners grant, change or remove the owner role;
- a tenant always keeps at least one owner (checked under a row lock, so two owners demoting
  each other at the same moment cannot leave the tenant ownerless);
- anyone may leave a tenant, except its last owner.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from saas.audit.services import audit_record
from saas.lib.consumers import sockets_close_for_user
from tenants.models import Membership, Role, Tenant, User

LAST_OWNER = "A tenant needs at least one owner. Make someone else owner first."


def _acting_membership(*, tenant: Tenant, user: User) -> Membership:
    membership = Membership.objects.filter(tenant=tenant, user=user).first()
    if membership is None:
        raise PermissionDenied("You are not a member of this tenant.")
    return membership


def _check_can_manage(*, acting: Membership, target: Membership, new_role: str | None) -> None:
    if not acting.is_admin:
        raise PermissionDenied("Only admins and owners can manage members.")
    touches_owner = target.role == Role.OWNER or new_role == Role.OWNER
    if touches_owner and not acting.is_owner:
        raise PermissionDenied("Only owners can grant, change or remove the owner role.")


def _check_keeps_an_owner(*, tenant: Tenant, target: Membership) -> None:
    if target.role != Role.OWNER:
        return
    owners = list(
        Membership.objects.select_for_update().filter(tenant=tenant, role=Role.OWNER).values("pk")
    )
    if len(owners) <= 1:
        raise ValidationError(LAST_OWNER, code="last_owner")


@transaction.atomic
def membership_change_role(
    *, tenant: Tenant, acting_user: User, membership: Membership, role: str
) -> Membership:
    if role not in Role.values:
        raise ValidationError("Unknown role.", code="invalid")
    if membership.tenant_id != tenant.pk:
        raise PermissionDenied("Not a member of this tenant.")
    acting = _acting_membership(tenant=tenant, user=acting_user)
    _check_can_manage(acting=acting, target=membership, new_role=role)
    if membership.role == role:
        return membership
    if role != Role.OWNER:
        _check_keeps_an_owner(tenant=tenant, target=membership)
    previous = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        tenant=tenant,
        action="member.role_changed",
        actor=acting_user,
        target=membership.user.email,
        data={"from": previous, "to": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, tenant: Tenant, acting_user: User, membership: Membership) -> None:
    if membership.tenant_id != tenant.pk:
        raise PermissionDenied("Not a member of this tenant.")
    leaving = membership.user_id == acting_user.pk
    if not leaving:
        acting = _acting_membership(tenant=tenant, user=acting_user)
        _check_can_manage(acting=acting, target=membership, new_role=None)
    _check_keeps_an_owner(tenant=tenant, target=membership)
    email, user_id = membership.user.email, membership.user_id
    membership.delete()
    transaction.on_commit(lambda: sockets_close_for_user(tenant, user_id))
    audit_record(
        tenant=tenant,
        action="member.left" if leaving else "member.removed",
        actor=acting_user,
        target=email,
    )
