"""Base views for tenant pages: the tenant and the caller's membership are resolved once, here.

Non-members get 404 on every tenant page (a tenant's pages answer strangers exactly like missing
ones); members without the needed role get 403."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import render

from tenants.models import Tenant
from tenants.selectors import membership_for


class TenantMemberRequiredMixin:
    """For views on a tenant's host. Sets `request.membership`."""

    admin_required = False

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.schema_name == settings.PUBLIC_SCHEMA_NAME:
            raise Http404
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = membership_for(tenant=tenant, user=request.user)
        if membership is None:
            raise Http404
        if tenant.status == Tenant.Status.SUSPENDED:
            return render(request, "errors/suspended.html", status=403)
        if self.admin_required and not membership.is_admin:
            raise PermissionDenied("Only admins and owners can open this page.")
        request.membership = membership
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class TenantAdminRequiredMixin(TenantMemberRequiredMixin):
    admin_required = True
