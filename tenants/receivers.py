"""Signal receivers for tenancy: sessions bound to their host at login, and their sockets
closed at logout."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest

from tenants.middleware import SESSION_TENANT_KEY


@receiver(user_logged_in, dispatch_uid="atrium-bind-session-to-tenant")
def bind_session_to_tenant(sender: object, request: HttpRequest | None, **kwargs: object) -> None:
    if request is not None and hasattr(request, "tenant"):
        request.session[SESSION_TENANT_KEY] = request.tenant.schema_name


@receiver(user_logged_out, dispatch_uid="atrium-close-sockets-at-logout")
def close_sockets_of_session(sender: object, request: HttpRequest | None, **kwargs: object) -> None:
    """Sent before the session is flushed: its key still names the sockets it opened."""
    from saas.lib.consumers import sockets_close_for_session

    tenant = getattr(request, "tenant", None) if request is not None else None
    if tenant is not None and request.session.session_key:
        sockets_close_for_session(tenant, request.session.session_key)
