"""python manage.py rotate_provider_keys: re-encrypt every tenant's provider keys with the newest
key in AI_ENCRYPTION_KEYS (put the new key first, run this, then drop the old key)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from ai.services import provider_keys_rotate
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Re-encrypt tenants' provider keys with the newest AI_ENCRYPTION_KEYS entry."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for tenant in Tenant.objects.filter(status=Tenant.Status.ACTIVE):
            total += provider_keys_rotate(tenant=tenant)
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {total} provider key(s)."))
