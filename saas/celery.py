"""The Celery app. Tasks run in the schema of the tenant that queued them (tenant-schemas-celery
puts the schema name in the message headers and switches to it before the task runs)."""

import os

from celery import Task
from celery.signals import task_postrun, task_prerun, worker_init
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saas.settings")

app = CeleryApp("atrium")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect(weak=False)
def _long_lived_loop(**kwargs: object) -> None:
    """Async task bodies run on one event loop per worker process (saas.lib.worker_loop), so
    their Redis and provider connections outlive the task."""
    from saas.lib import worker_loop

    worker_loop.enable()


@task_prerun.connect(weak=False)
def _log_context(task_id: str, task: object, **kwargs: object) -> None:
    """Log lines from a task carry its id and tenant, like those from a request."""
    from django.db import connection

    from saas.logging import request_id_var, tenant_var

    request_id_var.set(task_id)
    tenant_var.set(connection.schema_name)


@task_prerun.connect(weak=False)
@task_postrun.connect(weak=False)
def _recycle_connections(task: Task, **kwargs: object) -> None:
    """Connections a task leaves broken, or older than their age (pooled ones: always), are
    closed or given back to the pool at task boundaries, as Django does per request; usable
    ones stay for the next task (settings.CELERY_DB_REUSE_MAX). Not for eager tasks: they run
    inside their caller's transaction."""
    if not getattr(task.request, "is_eager", False):
        from django.db import close_old_connections

        close_old_connections()


@task_postrun.connect(weak=False)
def _flush_usage(**kwargs: object) -> None:
    """Usage rows a task queued are written before the task counts as done: forked pool
    processes end without running atexit handlers."""
    from ai.gateway.ledger_writer import TASK_FLUSH_S, usage_flush

    usage_flush(timeout=TASK_FLUSH_S)  # the rows stay queued (and retried) if it times out
