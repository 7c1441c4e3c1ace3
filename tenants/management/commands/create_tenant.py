"""python manage.py create_tenant --slug S --name N --owner-email E --owner-password P [--plan P]"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.selectors import user_by_email
from tenants.services.accounts import user_ensure
from tenants.services.provisioning import tenant_provision


class Command(BaseCommand):
    help = "Create a tenant with its owner (the owner's account is created if it does not exist)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--owner-email", required=True)
        parser.add_argument(
            "--owner-password",
            help="Required when the owner's account does not exist yet.",
        )
        parser.add_argument("--plan", default="free")

    def handle(self, *args: Any, **options: Any) -> None:
        email = options["owner_email"]
        if user_by_email(email=email) is None and not options["owner_password"]:
            raise CommandError(f"No account for {email}: pass --owner-password to create it.")
        try:
            owner = user_ensure(email=email, password=options["owner_password"])
            tenant = tenant_provision(
                slug=options["slug"], name=options["name"], owner=owner, plan_code=options["plan"]
            )
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        self.stdout.write(
            self.style.SUCCESS(f"Created tenant {tenant.slug} owned by {owner.email}")
        )
