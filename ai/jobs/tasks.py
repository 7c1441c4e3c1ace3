"""Bulk job tasks (queue `bulk`). Queued from a tenant's context, they run in it.

Fairness: a job is never worked through in one task. Each task takes one of the tenant's bulk
slots (JOBS_TENANT_CONCURRENCY across all workers), works one batch (JOBS_BATCH_SIZE items),
then queues its continuation at the back of the queue, behind every other tenant's waiting
tasks; a task that finds its tenant at the cap goes to the back too. So a tenant's 1000-item job
holds at most its slots, a batch at a time, and a small job of another tenant runs after at
most one batch per busy worker."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.jobs.batch import job_batch_cancel
from ai.jobs.processing import job_step
from ai.jobs.services import job_enqueue
from ai.models import Job
from saas.lib.semaphore import Semaphore
from saas.lib.tasks import in_tenant_slot
from tenants.models import Tenant

logger = logging.getLogger(__name__)

# A batch stops taking items after processing.STEP_BUDGET_S (120 s); one call may then still
# run up to AI_DEADLINE_S. Both limits stay below the broker's visibility timeout (900 s).
SOFT_TIME_LIMIT_S = 420
TIME_LIMIT_S = 480


def bulk_slots() -> Semaphore:
    """Per-tenant bulk slots (keys are tenant schemas)."""
    return Semaphore("bulk", lease_s=settings.JOBS_TENANT_LEASE_S)


@shared_task(bind=True, soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S)
def job_process_task(self: Task, *, job_id: int) -> None:
    """Work one batch of the job's items, then queue the continuation (if anything is left)."""
    tenant = connection.tenant
    in_tenant_slot(
        self, tenant, slots=bulk_slots(), limit=settings.JOBS_TENANT_CONCURRENCY,
        work=lambda: _work(self, tenant, job_id),
    )  # fmt: skip


def _work(task: Task, tenant: Tenant, job_id: int) -> None:
    step = job_step(tenant=tenant, job_id=job_id, max_items=settings.JOBS_BATCH_SIZE)
    if step.more:
        job_enqueue(tenant, job_id)  # at the back of the queue
    elif step.wait_s is not None:
        if task.app.conf.task_always_eager and not step.processed:
            # Run inline (tests, no worker): a countdown would not wait, only recurse. The
            # beat's resume task picks the job up in a real deployment.
            return
        job_enqueue(tenant, job_id, countdown=step.wait_s)


@shared_task(soft_time_limit=60, time_limit=90)
def job_batch_cancel_task(*, job_id: int) -> None:
    """Ask the provider to cancel a cancelled job's batch (best effort), then look at the batch
    so what it already processed is collected and billed."""
    tenant = connection.tenant
    job_batch_cancel(tenant=tenant, job_id=job_id)
    job_enqueue(tenant, job_id)


@shared_task(soft_time_limit=60, time_limit=90)
def jobs_resume_stalled_task() -> None:
    """Every minute (beat): queue a task for each active job no task has touched for a while
    (its task chain was lost: a worker crashed past the broker's redelivery, say). A duplicate
    chain is harmless: items are claimed one by one."""
    stalled_after = timedelta(seconds=2 * settings.JOBS_ITEM_LEASE_S)
    for tenant in Tenant.objects.filter(status=Tenant.Status.ACTIVE):
        with tenant_context(tenant):
            cutoff = timezone.now() - stalled_after
            stalled = list(
                Job.objects.filter(status__in=Job.ACTIVE, created_at__lt=cutoff)
                .exclude(touched_at__gte=cutoff)
                .values_list("pk", flat=True)
            )
            if stalled:
                Job.objects.filter(pk__in=stalled).update(touched_at=timezone.now())
        for job_id in stalled:
            logger.warning("bulk job %s of %s stalled: queued again", job_id, tenant.schema_name)
            job_enqueue(tenant, job_id)
