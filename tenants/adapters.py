"""allauth hooks: signup only on the public site, provisioning at signup, post-login routing."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import redirect

from tenants.models import User
from tenants.selectors import memberships_of
from tenants.services.handoff import login_handoff_url
from tenants.services.provisioning import tenant_provision


def _on_public_site(request: HttpRequest) -> bool:
    tenant = getattr(request, "tenant", None)
    return tenant is None or tenant.schema_name == settings.PUBLIC_SCHEMA_NAME


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # Tenants grow by invitation; new organisations sign up on the public site.
        return _on_public_site(request)

    def save_user(
        self, request: HttpRequest, user: User, form: object, commit: bool = True
    ) -> User:
        """Create the account and its organisation in one transaction."""
        data = form.cleaned_data  # type: ignore[attr-defined]
        try:
            with transaction.atomic():
                user = super().save_user(request, user, form, commit=True)
                request._atrium_new_tenant = tenant_provision(  # type: ignore[attr-defined]
                    slug=data["slug"], name=data["organization_name"], owner=user
                )
        except ValidationError as error:
            # Another signup took the slug between form validation and here: nothing was
            # saved; send the person back to the form with the reason.
            messages.error(request, " ".join(error.messages))
            raise ImmediateHttpResponse(redirect("account_signup")) from None
        return user

    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        tenant = getattr(request, "_atrium_new_tenant", None)
        if tenant is not None:
            return login_handoff_url(user=request.user, tenant=tenant)
        return super().get_signup_redirect_url(request)

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        """On the public site, go straight to the user's only tenant, or to the chooser."""
        if _on_public_site(request):
            memberships = list(memberships_of(user=request.user)[:2])
            if len(memberships) == 1:
                return login_handoff_url(user=request.user, tenant=memberships[0].tenant)
            return "/orgs/"
        return super().get_login_redirect_url(request)
