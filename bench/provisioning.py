"""Tenant provisioning: cloning the migrated template schema vs running every migration.

Both paths go through the same service (`tenant_provision`: tenant row, schema, domain, owner
membership, audit event); only the schema step differs. Goals: clone p95 <= 2 s, and cloning
at least 5x faster than migrating (median vs median)."""

from __future__ import annotations

import os
import time

from bench.common import goal, summary, use_scratch_database, write_result

NAME = "provisioning"
CLONES = int(os.environ.get("BENCH_PROVISIONING_CLONES", "20"))
MIGRATES = int(os.environ.get("BENCH_PROVISIONING_MIGRATES", "5"))


def _migrate_every_migration(tenant) -> None:
    """The baseline: django-tenants' own path, CREATE SCHEMA then run every tenant migration."""
    from django.test import override_settings

    with override_settings(TENANT_CREATION_FAKES_MIGRATIONS=False):
        tenant.create_schema(verbosity=0)


def _provision(slug: str, owner, **options) -> float:
    from tenants.services.provisioning import tenant_provision

    started = time.perf_counter()
    tenant_provision(slug=slug, name=slug, owner=owner, **options)
    return time.perf_counter() - started


def run() -> dict:
    use_scratch_database("atrium_bench_provisioning")
    import django

    django.setup()
    from django.core.management import call_command

    from tenants.services.accounts import user_ensure

    call_command("migrate_schemas", verbosity=0)
    owner = user_ensure(email="bench@example.test", password="bench-Password-123")
    _provision("warmup", owner)  # imports, first connection, function creation

    clone = [_provision(f"clone-{i}", owner) for i in range(CLONES)]
    migrate = [
        _provision(f"migrate-{i}", owner, build_schema=_migrate_every_migration)
        for i in range(MIGRATES)
    ]

    clone_stats, migrate_stats = summary(clone), summary(migrate)
    metrics = {
        "clone_p50_s": clone_stats["p50"],
        "clone_p95_s": clone_stats["p95"],
        "migrate_p50_s": migrate_stats["p50"],
        "migrate_p95_s": migrate_stats["p95"],
        "speedup_x": migrate_stats["p50"] / clone_stats["p50"],
    }
    goals = {
        "clone_p95_s": goal(metrics["clone_p95_s"], "<=", 2.0),
        "speedup_x": goal(metrics["speedup_x"], ">=", 5.0),
    }
    write_result(NAME, metrics, goals)
    return metrics
