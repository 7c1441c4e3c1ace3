from django.apps import AppConfig


class CatalogConfig(AppConfig):
    """Public-schema AI configuration shared by all tenants: models and their price versions,
    routes, feature flags, prompt templates and tenant AI policies."""

    name = "ai.catalog"
    label = "ai_catalog"
    verbose_name = "AI catalog"

    def ready(self) -> None:
        from ai.catalog import receivers  # noqa: F401  (bumps the config version on edits)
