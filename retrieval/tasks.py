"""Knowledge-base tasks (queue `ingestion`). Queued from a tenant's context, they run in it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection

from ai.gateway import AllProvidersFailed, GatewayError
from retrieval.selectors import knowledge_base_of
from retrieval.services import document_ingest, document_mark_failed
from saas.lib.semaphore import Semaphore
from saas.lib.tasks import in_tenant_slot
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def ingestion_slots() -> Semaphore:
    """Per-tenant ingestion slots (keys are tenant schemas)."""
    return Semaphore("ingestion", lease_s=settings.RETRIEVAL_TENANT_LEASE_S)


# A document that is not indexed after this long fails with a reason instead of staying
# "processing" (one PDF page pypdf cannot finish, say); the hard limit ends the process after.
SOFT_TIME_LIMIT_S = 600
TIME_LIMIT_S = 660


@shared_task(
    bind=True, max_retries=3, default_retry_delay=10,
    soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S,
)  # fmt: skip
def document_ingest_task(self: Task, *, document_id: int) -> None:
    """Ingest one document, at most RETRIEVAL_TENANT_CONCURRENCY at a time per tenant, so one
    tenant's backlog never holds every worker while another tenant's upload waits behind it."""
    tenant = connection.tenant
    _in_ingestion_slot(self, tenant, lambda: _ingest(tenant, document_id))


def _ingest(tenant: Tenant, document_id: int) -> None:
    try:
        document_ingest(tenant=tenant, document_id=document_id)
    except SoftTimeLimitExceeded:
        document_mark_failed(
            tenant, document_id,
            f"Indexing took longer than {SOFT_TIME_LIMIT_S // 60} minutes and was stopped. "
            "Split the document into smaller files and upload them again.",
        )  # fmt: skip


# A re-embedding task works this long, then queues its continuation: a big knowledge base is
# re-embedded in many short tasks that share the tenant's ingestion slots with its uploads.
REEMBED_STEP_S = 60
REEMBED_RETRY_DELAYS_S = (10, 30, 60, 120, 300)


@shared_task(
    bind=True, max_retries=len(REEMBED_RETRY_DELAYS_S),
    soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S,
)  # fmt: skip
def knowledge_base_reembed_task(self: Task) -> None:
    """Re-embed the tenant's knowledge base with the next model, then switch (retrieval.reindex)."""
    tenant = connection.tenant
    _in_ingestion_slot(self, tenant, lambda: _reembed(self, tenant))


def _reembed(task: Task, tenant: Tenant) -> None:
    from retrieval.reindex import embedding_switch_abandon, reembed_step

    model = knowledge_base_of(tenant=tenant).next_embedding_model
    try:
        done = reembed_step(tenant=tenant, budget_s=REEMBED_STEP_S)
    except AllProvidersFailed as error:  # the provider is down: try again later
        if task.request.retries >= task.max_retries:
            embedding_switch_abandon(tenant=tenant, model=model, reason=error.message)
            return
        raise task.retry(countdown=REEMBED_RETRY_DELAYS_S[task.request.retries]) from None
    except GatewayError as error:  # refused: retrying would not help
        embedding_switch_abandon(tenant=tenant, model=model, reason=error.message)
        return
    if not done:
        task.signature_from_request().apply_async()


@shared_task
def index_prune_task() -> None:
    """Remove vectors of embedding models the tenant's index no longer uses."""
    from retrieval.reindex import index_prune

    index_prune(tenant=connection.tenant)


def _in_ingestion_slot(task: Task, tenant: Tenant, work: Callable[[], None]) -> None:
    limit = settings.RETRIEVAL_TENANT_CONCURRENCY
    in_tenant_slot(task, tenant, slots=ingestion_slots(), limit=limit, work=work)
