"""Queueing tenant tasks from anywhere."""

from __future__ import annotations

from typing import Any

from celery import Task
from django_tenants.utils import tenant_context

from tenants.models import Tenant


def enqueue_for(tenant: Tenant, task: Task, *, countdown: float | None = None, **kwargs: Any):
    """Queue `task(**kwargs)` to run in `tenant`'s schema. tenant-schemas-celery sends the
    schema that is active when the message is published, which is not always the tenant's
    (an on-commit callback of a service called from the public schema, a command)."""
    with tenant_context(tenant):
        return task.apply_async(kwargs=kwargs, countdown=countdown)
