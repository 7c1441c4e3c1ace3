"""Tenant resolution for websockets: the Host header picks the tenant, exactly as for HTTP
(`tenants.selectors.tenant_for_hostname`); `X-Forwarded-Host` is never read."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.sessions import CookieMiddleware, InstanceSessionWrapper
from django.http.request import split_domain_port
from django_tenants.utils import remove_www

from tenants.models import Tenant
from tenants.selectors import tenant_for_hostname


def _host_header(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return value.decode("latin-1")
    return ""


@database_sync_to_async
def _tenant_for(host: str) -> Tenant | None:
    hostname, _port = split_domain_port(host)
    try:
        return tenant_for_hostname(remove_www(hostname))
    except Tenant.DoesNotExist:
        return None


class TenantWebsocketMiddleware:
    """Puts the Host's tenant in `scope["tenant"]` (None for unknown hosts: consumers refuse)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope, tenant=await _tenant_for(_host_header(scope)))
        return await self.inner(scope, receive, send)


class ReadOnlySessionMiddleware:
    """The session from the cookie in `scope["session"]`, as channels' SessionMiddleware puts
    it, without wrapping `send`: that wrapper checks every outgoing frame for a session to
    save (websockets never save one, and ours never change it), which cost ~8% of a server's
    CPU relaying chat streams."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send)


def session_auth_stack(inner: Any) -> Any:
    """channels' AuthMiddlewareStack with the read-only session: `scope["user"]` from the
    session cookie."""
    return CookieMiddleware(ReadOnlySessionMiddleware(AuthMiddleware(inner)))
