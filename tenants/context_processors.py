"""Template context for the navigation: current tenant, role and the tenant switcher."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from tenants.models import User
from tenants.selectors import membership_for, memberships_of
from tenants.slugs import url_for_host


def tenancy(request: HttpRequest) -> dict[str, object]:
    tenant = getattr(request, "tenant", None)
    is_public = tenant is None or tenant.schema_name == settings.PUBLIC_SCHEMA_NAME
    context: dict[str, object] = {
        "current_tenant": None if is_public else tenant,
        "public_signup_url": url_for_host(settings.BASE_DOMAIN, "/accounts/signup/"),
    }
    user = getattr(request, "user", None)
    if not isinstance(user, User) or not user.is_authenticated:
        return context  # also an API key's client (saas.api), which is not a person
    context["my_memberships"] = list(memberships_of(user=user))
    if not is_public:
        context["current_membership"] = getattr(request, "membership", None) or membership_for(
            tenant=tenant, user=user
        )
    return context
