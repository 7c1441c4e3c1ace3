"""The Celery app. Tasks run in the schema of the tenant that queued them (tenant-schemas-celery
puts the schema name in the message headers and switches to it before the task runs)."""

import os

from celery.signals import task_postrun, task_prerun
from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saas.settings")

app = CeleryApp("atrium")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect(weak=False)
def _log_context(task_id: str, task: object, **kwargs: object) -> None:
    """Log lines from a task carry its id and tenant, like those from a request."""
    from django.db import connection

    from saas.logging import request_id_var, tenant_var

    request_id_var.set(task_id)
    tenant_var.set(connection.schema_name)


@task_postrun.connect(weak=False)
def _flush_usage(**kwargs: object) -> None:
    """Usage rows a task queued are written before the task counts as done: forked pool
    processes end without running atexit handlers."""
    from ai.gateway.ledger_writer import TASK_FLUSH_S, usage_flush

    usage_flush(timeout=TASK_FLUSH_S)  # the rows stay queued (and retried) if it times out
