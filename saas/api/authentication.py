"""`Authorization: Bearer atr_live_...` for /api/v1/. The key decides the tenant: on the base
domain it selects it; on a tenant's host it must be that tenant's key. Spoofed Host or
X-Forwarded-Host headers cannot switch tenants (the host only ever narrows). Every failure gets
the same 401, whatever was wrong with the key."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from saas.logging import tenant_var
from tenants.models import APIKey
from tenants.selectors import api_key_for_secret
from tenants.services.api_keys import api_key_touch

INVALID_KEY = "Invalid or missing API key."


@dataclass
class APIClient:
    """`request.user` for a key: the tenant's integration, not a person."""

    key: APIKey
    is_authenticated: bool = True
    is_anonymous: bool = False
    pk: None = None

    @property
    def email(self) -> str:
        return f"API key “{self.key.name}”"


class APIKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[APIClient, APIKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # then NotAuthenticated: the same 401 below
        scheme, _, raw = header.partition(" ")
        key = api_key_for_secret(raw.strip()) if scheme.lower() == "bearer" else None
        host_tenant = getattr(request._request, "tenant", None)
        on_tenant_host = host_tenant and host_tenant.schema_name != settings.PUBLIC_SCHEMA_NAME
        if key is None or (on_tenant_host and host_tenant.pk != key.tenant_id):
            raise AuthenticationFailed(INVALID_KEY)
        request._request.tenant = key.tenant
        connection.set_tenant(key.tenant)
        tenant_var.set(key.tenant.schema_name)
        api_key_touch(key=key)
        return APIClient(key), key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="atrium"'
