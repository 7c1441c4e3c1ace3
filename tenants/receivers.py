"""Signal receivers for tenancy (kept to the one hook Django and allauth offer at login)."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest

from tenants.middleware import SESSION_TENANT_KEY


@receiver(user_logged_in, dispatch_uid="atrium-bind-session-to-tenant")
def bind_session_to_tenant(sender: object, request: HttpRequest | None, **kwargs: object) -> None:
    if request is not None and hasattr(request, "tenant"):
        request.session[SESSION_TENANT_KEY] = request.tenant.schema_name
