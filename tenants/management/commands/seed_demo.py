"""python manage.py seed_demo: the `demo` tenant for `make dev`, safe to run again."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from retrieval.demo import demo_knowledge_base_seed
from tenants.selectors import tenant_by_slug
from tenants.services.accounts import user_ensure
from tenants.services.provisioning import tenant_provision
from tenants.slugs import domain_for, url_for_host

DEMO_SLUG = "demo"
DEMO_EMAIL = "demo@example.com"


def _demo_password() -> str:
    """Generated once and kept in .devdata/, so every `make dev` prints the same password."""
    path = Path(settings.BASE_DIR) / ".devdata" / "demo-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"demo-{secrets.token_urlsafe(9)}")
    return path.read_text().strip()


class Command(BaseCommand):
    help = "Create the demo tenant and its owner if missing, and print how to sign in."

    def handle(self, *args: Any, **options: Any) -> None:
        password = _demo_password()
        owner = user_ensure(email=DEMO_EMAIL, password=password)
        if not owner.check_password(password):
            owner.set_password(password)
            owner.save(update_fields=["password"])
        tenant = tenant_by_slug(slug=DEMO_SLUG) or tenant_provision(
            slug=DEMO_SLUG, name="Demo Inc.", owner=owner
        )
        added = demo_knowledge_base_seed(tenant=tenant, owner=owner)
        if added:
            self.stdout.write(f"Demo knowledge base: {added} document(s) indexed.")
        url = url_for_host(domain_for(DEMO_SLUG))
        self.stdout.write(
            self.style.SUCCESS(f"Demo tenant: {url}  sign in as {DEMO_EMAIL} / {password}")
        )
