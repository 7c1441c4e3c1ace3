"""Reads of bulk jobs. Jobs live in the tenant's schema: another tenant's id is simply not there
and answers like a missing one."""

from __future__ import annotations

import uuid

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404
from django_tenants.utils import tenant_context

from ai.gateway import GatewayError, batch_check
from ai.gateway.config import config_snapshot
from ai.gateway.routing import route_targets, tenant_credentials, usable_models
from ai.models import Job, JobItem
from retrieval.selectors import documents_by_public_id
from tenants.models import Tenant

FEATURE = "chat"  # the catalog route bulk prompts take (ai/catalog ROUTES)


def jobs_for_api() -> QuerySet[Job]:
    """Lazily evaluated: the API runs with the key's tenant schema already active."""
    return Job.objects.all()


def job_by_public_id(*, tenant: Tenant, public_id: uuid.UUID) -> Job:
    """One of the tenant's jobs; anything else is a 404 like a missing one."""
    with tenant_context(tenant):
        job = Job.objects.filter(public_id=public_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


def job_items(*, job: Job, status: str | None = None) -> QuerySet[JobItem]:
    """The job's items in submission order (lazy: evaluate in the job's tenant schema)."""
    items = JobItem.objects.filter(job_id=job.pk)
    return items.filter(status=status) if status else items


def jobs_page(*, tenant: Tenant, page: str | int | None, per_page: int = 25) -> Page:
    """One page of the tenant's jobs, newest first (an out-of-range page gives the last)."""
    with tenant_context(tenant):
        result = Paginator(Job.objects.all(), per_page).get_page(page)
        result.object_list = list(result.object_list)
        return result


def job_items_page(*, tenant: Tenant, job: Job, page: str | int | None, per_page: int = 50) -> Page:
    """One page of the job's items; those about a document carry `document_title` (empty
    when the document has since been deleted)."""
    with tenant_context(tenant):
        result = Paginator(job_items(job=job), per_page).get_page(page)
        items = list(result.object_list)
    ids = [item.document_id for item in items if item.document_id]
    if ids:
        documents = documents_by_public_id(tenant=tenant, public_ids=ids)
        for item in items:
            found = documents.get(item.document_id) if item.document_id else None
            item.document_title = found.title if found else ""  # type: ignore[attr-defined]
    result.object_list = items
    return result


def job_model_allowed(*, tenant: Tenant, model: str) -> bool:
    """Whether the tenant may name `model` for bulk prompts now (plan tier, policy, a key)."""
    snapshot = config_snapshot()
    byok = tenant_credentials(tenant, snapshot.generation)
    usable = usable_models(snapshot=snapshot, tenant=tenant, kind="chat", byok=byok)
    return any(spec.key == model for spec in usable)


def job_provider_key(*, tenant: Tenant, model: str) -> str:
    """What the job's calls are counted against for the per-provider cap: the provider the
    gateway's route will try first, and for the tenant's own key (BYOK) that provider and the
    tenant, whose own rate limits those calls spend. Failing over is the gateway's business."""
    snapshot = config_snapshot()
    try:
        byok = tenant_credentials(tenant, snapshot.generation)
        targets = route_targets(
            snapshot=snapshot, tenant=tenant, feature=FEATURE, kind="chat", byok=byok,
            requested_model=model or None,
        )  # fmt: skip
    except GatewayError:  # the call itself will fail with the reason
        return "default"
    first = targets[0]
    provider = first.model.provider
    return f"{provider}:{tenant.schema_name}" if first.credentials.byok else provider


def job_batch_refusal(*, tenant: Tenant, model: str) -> str:
    """Why a job of `model` (empty: the route's) cannot be sent as a provider batch now, or ""."""
    try:
        batch_check(tenant=tenant, feature=FEATURE, model=model or None)
    except GatewayError as error:
        return error.message
    return ""
