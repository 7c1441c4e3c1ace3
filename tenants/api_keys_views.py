"""The API keys page (tenant admins): list, create (the key is shown once), revoke."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views import View

from saas.lib.views import TenantAdminRequiredMixin
from tenants.forms import APIKeyForm
from tenants.selectors import api_key_in, api_keys_of
from tenants.services.api_keys import api_key_create, api_key_revoke


class APIKeysView(TenantAdminRequiredMixin, View):
    template_name = "tenants/api_keys.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._render(request, APIKeyForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = APIKeyForm(request.POST)
        if not form.is_valid():
            return self._render(request, form, status=400)
        days = form.cleaned_data["expires_in_days"]
        try:
            key, raw = api_key_create(
                tenant=request.tenant, name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"], acting_user=request.user,
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )  # fmt: skip
        except ValidationError as error:
            form.add_error(None, error)
            return self._render(request, form, status=400)
        # Rendered, not redirected: the key exists only in this one response.
        response = self._render(request, APIKeyForm(), created=(key, raw))
        response["Cache-Control"] = "no-store"
        return response

    def _render(self, request: HttpRequest, form: APIKeyForm, status: int = 200, created=None):
        context = {
            "form": form,
            "keys": api_keys_of(tenant=request.tenant),
            "created": created,
            "now": timezone.now(),
        }
        return render(request, self.template_name, context, status=status)


class APIKeyRevokeView(TenantAdminRequiredMixin, View):
    def post(self, request: HttpRequest, key_pk: int) -> HttpResponse:
        key = api_key_in(tenant=request.tenant, key_pk=key_pk)
        api_key_revoke(key=key, acting_user=request.user)
        messages.success(request, f"“{key.name}” is revoked: requests with it are refused now.")
        return redirect("api_keys")
