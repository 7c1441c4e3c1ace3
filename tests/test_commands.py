"""Management commands and provisioning by template clone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_context

from saas.audit.models import AuditEvent
from tenants.models import Membership, Role, Tenant

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def test_it_creates_a_tenant_from_the_command_line(world):
    call_command(
        "create_tenant", "--slug", "umbrella", "--name", "Umbrella", "--owner-email",
        "ops@umbrella.test", "--owner-password", "Umbrella-pass-42", "--plan", "pro",
    )  # fmt: skip
    tenant = Tenant.objects.get(slug="umbrella")
    assert tenant.plan_code == "pro"
    membership = Membership.objects.get(tenant=tenant)
    assert membership.user.email == "ops@umbrella.test"
    assert membership.user.check_password("Umbrella-pass-42")
    assert membership.role == Role.OWNER


def test_it_reports_bad_command_input_clearly(world):
    with pytest.raises(CommandError, match="reserved"):
        call_command(
            "create_tenant", "--slug", "admin", "--name", "X", "--owner-email", "alice@acme.test"
        )
    with pytest.raises(CommandError, match="--owner-password"):
        call_command(
            "create_tenant", "--slug", "newco", "--name", "X", "--owner-email", "new@x.test"
        )
    assert not Tenant.objects.filter(slug__in=["admin", "newco"]).exists()


def test_it_clones_the_template_schema_with_tables_and_migration_history(world):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            ["t_acme"],
        )
        tables = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT count(*) FROM t_acme.django_migrations WHERE app = 'audit'")
        audit_migrations = cursor.fetchone()[0]
    assert "audit_auditevent" in tables
    assert "tenants_tenant" not in tables  # shared tables stay in public
    assert audit_migrations >= 1
    with schema_context("t_acme"):
        # Rows never leak from the template into a new tenant.
        assert not AuditEvent.objects.filter(action="template").exists()


@pytest.mark.django_db(databases=["default", "ledger"])
def test_it_seeds_the_demo_tenant_and_its_knowledge_base_idempotently(world, capsys):
    from retrieval.models import Document
    from retrieval.selectors import knowledge_search

    call_command("seed_demo")
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert out.count("Demo tenant: http://demo.localhost:8000/") == 2
    assert out.count("Demo knowledge base: 2 document(s) indexed.") == 1
    demo = Tenant.objects.get(slug="demo")
    with schema_context(demo.schema_name):
        assert Document.objects.filter(status="ready").count() == 2
    assert knowledge_search(tenant=demo, query="How do I invite a colleague?")
    assert Tenant.objects.filter(slug="demo").count() == 1
    assert Membership.objects.get(tenant__slug="demo").user.email == "demo@example.com"


def _settings_probe(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ATRIUM_ENV", "DEBUG")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_requires_a_secret_key_in_production():
    result = _settings_probe({"ATRIUM_ENV": "production"})
    assert result.returncode != 0
    assert "Set the environment variable SECRET_KEY." in result.stderr


def test_it_fails_loudly_on_a_bad_setting():
    result = _settings_probe({"DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DEBUG must be one of true/false" in result.stderr
    result = _settings_probe({"SITE_PORT": "eighty"})
    assert "SITE_PORT must be an integer" in result.stderr


def test_it_keeps_debug_off_by_default():
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
         "print(settings.DEBUG)"],
        env={k: v for k, v in os.environ.items() if k != "DEBUG"},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.stdout.strip() == "False"
