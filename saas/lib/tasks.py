"""Queueing tenant tasks from anywhere, and running them fairly between tenants."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import redis
from celery import Task
from django_tenants.utils import tenant_context

from saas.lib.semaphore import Semaphore
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# A task that finds its tenant at the cap comes back after this many seconds (jittered, so a
# tenant's waiting tasks do not all come back at once).
REQUEUE_DELAY_S = (1.0, 2.0)


def enqueue_for(tenant: Tenant, task: Task, *, countdown: float | None = None, **kwargs: Any):
    """Queue `task(**kwargs)` to run in `tenant`'s schema. tenant-schemas-celery sends the
    schema that is active when the message is published, which is not always the tenant's
    (an on-commit callback of a service called from the public schema, a command)."""
    with tenant_context(tenant):
        return task.apply_async(kwargs=kwargs, countdown=countdown)


def in_tenant_slot(
    task: Task, tenant: Tenant, *, slots: Semaphore, limit: int, work: Callable[[], None]
) -> None:
    """Run `work` in one of the tenant's `limit` slots across all workers, or put the task
    back at the tail of its queue (same id, arguments and retry count: waiting for a slot is
    not a failure), behind other tenants' tasks, when the tenant is at its cap. So one
    tenant's backlog never holds every worker while another tenant's task waits."""
    if task.app.conf.task_always_eager:  # requeues would run inline: no queue to be fair in
        work()
        return
    try:
        lease = slots.acquire(tenant.schema_name, limit=limit)
    except redis.RedisError as error:
        # Working uncapped beats leaving the tenant's work queued until Redis is back.
        logger.warning("%s slots unavailable, working uncapped: %s", slots.name, error)
        work()
        return
    if lease is None:
        # The countdown keeps a tenant alone at its cap from spinning through its backlog.
        countdown = random.uniform(*REQUEUE_DELAY_S)  # noqa: S311 (jitter, not a secret)
        with tenant_context(tenant):
            task.signature_from_request(countdown=countdown).apply_async()
        return
    with lease:  # kept alive while working, released at the end (whatever happens)
        work()
