from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"

    def ready(self) -> None:
        from tenants import receivers  # noqa: F401  (binds each login to its tenant host)
