"""Creating tenants. A new tenant's schema is copied from the migrated template schema
(TENANT_BASE_SCHEMA, kept current by `migrate_schemas`), which is much faster than running every
migration: see tenants/schema_clone.py and bench/provisioning.py."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from saas.audit.services import audit_record
from saas.metrics import TENANTS_PROVISIONED
from tenants.models import Domain, Membership, Role, Tenant, User
from tenants.schema_clone import SchemaExists, schema_clone
from tenants.slugs import domain_for, schema_name_for, slug_validate

logger = logging.getLogger(__name__)

SLUG_TAKEN = "This address is already taken. Please pick another."


def slug_check_available(slug: str) -> None:
    """Raise ValidationError if `slug` is malformed, reserved or already used."""
    slug_validate(slug)
    if Tenant.objects.filter(slug=slug).exists():
        raise ValidationError(SLUG_TAKEN, code="taken")


def schema_create_from_template(tenant: Tenant) -> None:
    schema_clone(source=settings.TENANT_BASE_SCHEMA, target=tenant.schema_name)


def tenant_provision(
    *,
    slug: str,
    name: str,
    owner: User,
    plan_code: str = "free",
    build_schema: Callable[[Tenant], None] = schema_create_from_template,
) -> Tenant:
    """Create a tenant with its schema, domain and owner membership, all or nothing.

    `build_schema` exists for the benchmark, which measures the migrate-everything baseline."""
    slug = slug.strip().lower()
    name = name.strip()
    if not name:
        raise ValidationError("Give the organisation a name.", code="required")
    slug_check_available(slug)
    try:
        with transaction.atomic():
            tenant = Tenant(
                slug=slug, name=name, schema_name=schema_name_for(slug), plan_code=plan_code
            )
            tenant.save()
            build_schema(tenant)
            Domain.objects.create(domain=domain_for(slug), tenant=tenant, is_primary=True)
            Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
            audit_record(tenant=tenant, action="tenant.created", actor=owner, target=slug)
    except (IntegrityError, SchemaExists):
        # Two signups raced for the same slug; the loser gets the same form error.
        raise ValidationError(SLUG_TAKEN, code="taken") from None
    TENANTS_PROVISIONED.inc()
    logger.info("tenant provisioned", extra={"slug": slug})
    return tenant
