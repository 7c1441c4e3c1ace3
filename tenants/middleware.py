"""Tenant routing by Host, and the rule that a session only counts on the host that created it."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import DisallowedHost, ObjectDoesNotExist
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django_tenants.middleware.main import TenantMainMiddleware
from django_tenants.utils import get_tenant_domain_model

from saas.logging import tenant_var
from tenants.models import Tenant
from tenants.selectors import tenant_for_hostname

SESSION_TENANT_KEY = "_atrium_tenant"


class TenantHostMiddleware(TenantMainMiddleware):
    """The base domain is the public site; `<slug>.<base domain>` is that tenant's site.
    Unknown hosts get a friendly 404 page instead of an error."""

    def get_tenant(self, domain_model: type, hostname: str) -> Tenant:
        return tenant_for_hostname(hostname)

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        connection.set_schema_to_public()
        try:
            hostname = self.hostname_from_request(request)
            tenant = self.get_tenant(get_tenant_domain_model(), hostname)
        except (DisallowedHost, ObjectDoesNotExist):
            return render(request, "errors/unknown_host.html", status=404)
        tenant.domain_url = hostname
        request.tenant = tenant
        connection.set_tenant(tenant)
        tenant_var.set(tenant.schema_name)
        self.setup_url_routing(request)
        return None


class SessionTenantBindingMiddleware:
    """A session cookie from tenant A replayed on tenant B's host does not authenticate there.

    Cookies are host-only already; this also stops a cookie copied by hand. Logins record the
    schema they happened on (tenants.receivers)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            bound = request.session.get(SESSION_TENANT_KEY)
            if bound != request.tenant.schema_name:
                request.user = AnonymousUser()
        return self.get_response(request)
