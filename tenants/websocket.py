"""Tenant resolution for websockets: the Host header picks the tenant, exactly as for HTTP
(`tenants.selectors.tenant_for_hostname`); `X-Forwarded-Host` is never read."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
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
