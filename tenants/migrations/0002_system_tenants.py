"""The pgvector extension, the public tenant row and the template schema new tenants clone.

The template is a tenant row (status "system", no domain), so every `migrate_schemas` run
migrates it along with the real tenants and clones never start from a stale schema."""

from django.db import migrations
from pgvector.django import VectorExtension

TEMPLATE_SCHEMA = "tenant_template"


def create_system_tenants(apps, schema_editor):
    Tenant = apps.get_model("tenants", "Tenant")
    schema_editor.execute(f'CREATE SCHEMA IF NOT EXISTS "{TEMPLATE_SCHEMA}"')
    Tenant.objects.get_or_create(
        schema_name="public", defaults={"slug": "public", "name": "Public", "status": "system"}
    )
    Tenant.objects.get_or_create(
        schema_name=TEMPLATE_SCHEMA,
        defaults={"slug": "tenant-template", "name": "Template", "status": "system"},
    )


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]

    operations = [
        VectorExtension(),
        migrations.RunPython(create_system_tenants, migrations.RunPython.noop),
    ]
