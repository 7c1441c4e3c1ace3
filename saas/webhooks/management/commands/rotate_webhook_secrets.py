"""python manage.py rotate_webhook_secrets: re-encrypt every tenant's webhook signing secrets with
the newest key in AI_ENCRYPTION_KEYS (run it with rotate_provider_keys, before dropping a key)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from saas.webhooks.services import webhook_secrets_reencrypt
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Re-encrypt tenants' webhook signing secrets with the newest AI_ENCRYPTION_KEYS entry."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        # Suspended tenants too: their secrets must still decrypt once the old key is gone.
        for tenant in Tenant.objects.exclude(status=Tenant.Status.SYSTEM):
            total += webhook_secrets_reencrypt(tenant=tenant)
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {total} webhook secret(s)."))
