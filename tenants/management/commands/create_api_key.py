"""python manage.py create_api_key --tenant S --name N [--scopes chat search ...] [--expires-days D]

Prints the key once, alone on a line (so scripts can capture it); only its hash is stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from tenants.models import APIKey
from tenants.selectors import tenant_by_slug
from tenants.services.api_keys import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="The tenant's slug.")
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--scopes", nargs="+", default=list(APIKey.Scope.values),
            help=f"Any of: {' '.join(APIKey.Scope.values)} (default: all).",
        )  # fmt: skip
        parser.add_argument("--expires-days", type=int, help="Expire after this many days.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_by_slug(slug=options["tenant"])
        if tenant is None:
            raise CommandError(f"No active tenant {options['tenant']!r}.")
        days = options["expires_days"]
        if days is not None and days < 1:
            raise CommandError("--expires-days must be at least 1.")
        try:
            _key, raw = api_key_create(
                tenant=tenant, name=options["name"], scopes=options["scopes"],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )  # fmt: skip
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(raw)
