"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import logging

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_tenants.utils import schema_context
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up and answering; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
    return None


def _check_redis() -> str | None:
    cache.get("readyz-probe")
    return None


def _app_labels(app_names: list[str]) -> set[str]:
    return {config.label for config in apps.get_app_configs() if config.name in app_names}


def _pending_migrations(schema_name: str, app_labels: set[str]) -> int:
    with schema_context(schema_name):
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return sum(1 for migration, _ in plan if migration.app_label in app_labels)


def _check_migrations() -> str | None:
    # Shared apps migrate in public; tenant apps in the template every new tenant is cloned from
    # (and in each tenant: `migrate_schemas` covers them all, template included).
    pending = _pending_migrations(
        settings.PUBLIC_SCHEMA_NAME, _app_labels(settings.SHARED_APPS)
    ) + _pending_migrations(settings.TENANT_BASE_SCHEMA, _app_labels(settings.TENANT_APPS))
    return f"{pending} migration(s) not applied" if pending else None


CHECKS = {"database": _check_database, "redis": _check_redis, "migrations": _check_migrations}


def readyz(request: HttpRequest) -> HttpResponse:
    """Ready to serve: database and Redis answer and no migration is pending. 503 otherwise."""
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            problem = check()
        except Exception as exc:  # a probe reports failures, it must not raise them
            logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
            problem = f"unavailable ({type(exc).__name__})"
        results[name] = problem or "ok"
    ready = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
    )


def metrics(request: HttpRequest) -> HttpResponse:
    from ai.gateway.metrics import refresh_breaker_state

    try:
        refresh_breaker_state()
    except Exception as exc:  # Redis down: still serve the other metrics
        logger.warning("breaker state unavailable: %s", type(exc).__name__)
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
