"""The fast template copy must produce exactly what running the migrations produces."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from tenants.models import Tenant
from tenants.schema_clone import SchemaExists, schema_clone
from tenants.services.provisioning import tenant_provision

pytestmark = pytest.mark.django_db

_SHAPE = {
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, is_nullable,
               regexp_replace(coalesce(column_default, ''), %(schema)s, 'S', 'g'),
               is_identity, identity_generation, is_generated, generation_expression
        FROM information_schema.columns WHERE table_schema = %(schema)s""",
    "constraints": """
        SELECT cl.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
        FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid
        WHERE cl.relnamespace = %(schema)s::regnamespace""",
    "indexes": """
        SELECT indexname, replace(indexdef, %(schema)s || '.', 'S.')
        FROM pg_indexes WHERE schemaname = %(schema)s""",
    "rows": """SELECT app, name FROM {schema}.django_migrations""",
}


def schema_shape(schema: str) -> dict[str, set[tuple]]:
    shape = {}
    with connection.cursor() as cursor:
        cursor.execute(f'SET search_path = "{schema}"')
        for name, query in _SHAPE.items():
            cursor.execute(query.format(schema=f'"{schema}"'), {"schema": schema})
            shape[name] = set(cursor.fetchall())
    connection.set_schema_to_public()
    return shape


def _migrate(tenant: Tenant) -> None:
    with override_settings(TENANT_CREATION_FAKES_MIGRATIONS=False):
        tenant.create_schema(verbosity=0)


def test_it_copies_the_template_into_the_same_shape_as_migrating(world):
    cloned = tenant_provision(slug="shape-clone", name="Clone", owner=world.alice)
    migrated = tenant_provision(
        slug="shape-migrate", name="Migrate", owner=world.alice, build_schema=_migrate
    )
    clone_shape = schema_shape(cloned.schema_name)
    migrate_shape = schema_shape(migrated.schema_name)
    for part in _SHAPE:
        assert clone_shape[part] == migrate_shape[part], part
    assert clone_shape["indexes"]  # the comparison compared something


def test_it_keeps_identity_sequences_ahead_of_copied_rows(world):
    tenant = tenant_provision(slug="seq-check", name="Seq", owner=world.alice)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {tenant.schema_name}.django_migrations (app, name, applied) "
            "VALUES ('x', 'y', now())"
        )


def test_it_refuses_to_overwrite_an_existing_schema(world):
    with pytest.raises(SchemaExists):
        schema_clone(source="tenant_template", target="t_acme")


def test_it_falls_back_to_the_generic_clone_for_objects_it_does_not_copy(world):
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA scratch_src")
        cursor.execute("CREATE TABLE scratch_src.item (id bigint PRIMARY KEY, name text)")
        cursor.execute("INSERT INTO scratch_src.item VALUES (1, 'one')")
        cursor.execute("CREATE VIEW scratch_src.item_names AS SELECT name FROM scratch_src.item")
    schema_clone(source="scratch_src", target="scratch_dst")
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM scratch_dst.item_names")
        assert cursor.fetchall() == [("one",)]
