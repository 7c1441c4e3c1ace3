"""Operators edit the AI catalog here (public site, /admin/, staff only)."""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms import ModelForm

from ai.catalog import models as catalog


class PriceInline(admin.TabularInline):
    model = catalog.ModelPrice
    extra = 0


@admin.register(catalog.AIModel)
class AIModelAdmin(admin.ModelAdmin):
    list_display = ("key", "provider", "provider_model", "kind", "tier", "context_window", "active")
    list_filter = ("provider", "kind", "tier", "active")
    inlines = [PriceInline]


@admin.register(catalog.Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = ("feature", "tier", "models")


@admin.register(catalog.FeatureFlag)
class FeatureFlagAdmin(admin.ModelAdmin):
    list_display = ("feature", "tenant", "enabled", "reason", "updated_at")
    list_filter = ("enabled", "feature")


class PromptVersionForm(ModelForm):
    def clean(self):
        if self.instance.pk:
            raise ValidationError("Prompt versions are immutable: add a new version instead.")
        return super().clean()


class PromptVersionInline(admin.StackedInline):
    model = catalog.PromptVersion
    form = PromptVersionForm
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        # Saved versions are shown read-only; only the blank extra form can add one.
        return ("version", "system", "note", "created_at") if obj else ("created_at",)

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(catalog.PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    list_display = ("key", "active_version", "candidate_version", "candidate_percent")
    inlines = [PromptVersionInline]


@admin.register(catalog.PromptVersion)
class PromptVersionAdmin(admin.ModelAdmin):
    list_display = ("template", "version", "note", "created_at")
    form = PromptVersionForm

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None


@admin.register(catalog.TenantAIPolicy)
class TenantAIPolicyAdmin(admin.ModelAdmin):
    list_display = ("tenant", "allowed_models", "cache_enabled", "semantic_cache_enabled")
