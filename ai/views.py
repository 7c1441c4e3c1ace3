"""Tenant AI settings pages."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from ai.catalog.models import Provider
from ai.forms import ProviderKeyForm
from ai.selectors import provider_keys_of
from ai.services import provider_key_remove, provider_key_set
from saas.lib.views import TenantAdminRequiredMixin


class AISettingsView(TenantAdminRequiredMixin, View):
    template_name = "ai/settings.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._render(request, ProviderKeyForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = ProviderKeyForm(request.POST)
        if form.is_valid():
            try:
                provider_key_set(
                    tenant=request.tenant, acting_user=request.user, **form.cleaned_data
                )
            except ValidationError as error:
                form.add_error("api_key", error)
            else:
                label = Provider(form.cleaned_data["provider"]).label
                messages.success(request, f"{label} key saved. Calls to {label} now use it.")
                return redirect("ai_settings")
        return self._render(request, form, status=400)

    def _render(self, request: HttpRequest, form: ProviderKeyForm, status: int = 200):
        context = {"form": form, "keys": provider_keys_of(tenant=request.tenant)}
        return render(request, self.template_name, context, status=status)


class ProviderKeyRemoveView(TenantAdminRequiredMixin, View):
    def post(self, request: HttpRequest, provider: str) -> HttpResponse:
        if provider_key_remove(tenant=request.tenant, acting_user=request.user, provider=provider):
            messages.success(request, "Key removed. Calls use the platform's providers again.")
        return redirect("ai_settings")
