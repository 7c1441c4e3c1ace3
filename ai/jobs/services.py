"""Writes for bulk jobs: submit (prompts, or documents to summarize/classify), cancel, finalize.
Model calls happen in processing.py (tasks)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.gateway import GatewayError
from ai.jobs.documents import (
    DOCUMENT_KINDS,
    INSTRUCTIONS_MAX_CHARS,
    document_prompts,
    documents_check,
    labels_check,
)
from ai.jobs.selectors import job_batch_refusal, job_model_allowed
from ai.models import Job, JobItem
from saas.audit.services import audit_record
from saas.lib.tasks import enqueue_for
from saas.webhooks.services import webhook_emit
from tenants.models import APIKey, Tenant, User
from tenants.selectors import membership_for

CUSTOM_ID_MAX_CHARS = 64


@dataclass(frozen=True)
class JobInput:
    prompt: str
    custom_id: str = ""
    document_id: uuid.UUID | None = None  # summarize/classify: the document it was built from
    truncated: bool = False  # ... whose text was cut to the budget


class JobLimitReached(Exception):
    """The tenant already has JOBS_MAX_ACTIVE_PER_TENANT jobs queued or running."""


def job_inputs_check(inputs: list[JobInput], *, system: str = "") -> None:
    """The size limits, with messages per field (`items`, `items.3.prompt`, `system`)."""
    errors: dict[str, list[str]] = {}
    if not inputs:
        errors["items"] = ["Send at least one prompt."]
    elif len(inputs) > settings.JOBS_MAX_ITEMS:
        errors["items"] = [
            f"A job takes at most {settings.JOBS_MAX_ITEMS} prompts; this one has {len(inputs)}. "
            "Split it into several jobs."
        ]
    limit = settings.JOBS_MAX_PROMPT_CHARS
    seen: set[str] = set()
    for index, item in enumerate(inputs[: settings.JOBS_MAX_ITEMS]):
        if not item.prompt.strip():
            errors[f"items.{index}.prompt"] = ["This prompt is empty."]
        elif len(item.prompt) > limit:
            errors[f"items.{index}.prompt"] = [
                f"Use at most {limit} characters (this prompt has {len(item.prompt)})."
            ]
        if item.custom_id:
            if len(item.custom_id) > CUSTOM_ID_MAX_CHARS:
                errors[f"items.{index}.custom_id"] = [
                    f"Use at most {CUSTOM_ID_MAX_CHARS} characters."
                ]
            elif item.custom_id in seen:
                errors[f"items.{index}.custom_id"] = ["Another item of this job has this id."]
            seen.add(item.custom_id)
    if len(system) > limit:
        errors["system"] = [f"Use at most {limit} characters (this one has {len(system)})."]
    if errors:
        raise ValidationError(errors)


def job_submit(
    *,
    tenant: Tenant,
    inputs: list[JobInput],
    model: str = "",
    system: str = "",
    max_tokens: int | None = None,
    mode: str = Job.Mode.DIRECT,
    api_key: APIKey | None = None,
    user: User | None = None,
) -> Job:
    """Store a job with one item per prompt and queue its work once the transaction commits.
    `mode` "batch": sent as one provider batch at the batch price (OpenAI and Anthropic models
    only: any other is refused here, never silently sent direct). Raises ValidationError
    (messages per field) and JobLimitReached."""
    job_inputs_check(inputs, system=system)
    job_options_check(tenant=tenant, model=model, mode=mode)
    return _job_create(
        tenant=tenant, inputs=inputs, kind=Job.Kind.PROMPTS, model=model, system=system,
        max_tokens=max_tokens, mode=mode, api_key=api_key, user=user,
    )  # fmt: skip


def job_submit_documents(
    *,
    tenant: Tenant,
    kind: str,
    documents: list[uuid.UUID],
    labels: list[str] | None = None,
    instructions: str = "",
    model: str = "",
    system: str = "",
    max_tokens: int | None = None,
    mode: str = Job.Mode.DIRECT,
    api_key: APIKey | None = None,
    user: User | None = None,
) -> Job:
    """A job over the tenant's knowledge-base documents (by public id): `kind` "summarize"
    (a summary of each) or "classify" (one of `labels` for each), one item per document,
    its prompt built now from the document's text (ai/jobs/documents.py); otherwise as
    `job_submit`. Raises ValidationError (messages per field: `documents.3`, `labels.1`, ...)
    and JobLimitReached."""
    if kind not in DOCUMENT_KINDS:
        choices = ", ".join(DOCUMENT_KINDS)
        raise ValidationError({"kind": [f"Jobs over documents are of kind {choices}."]})
    errors: dict[str, list[str]] = {}
    limit = settings.JOBS_MAX_PROMPT_CHARS
    if len(system) > limit:
        errors["system"] = [f"Use at most {limit} characters (this one has {len(system)})."]
    if len(instructions) > INSTRUCTIONS_MAX_CHARS:
        errors["instructions"] = [
            f"Use at most {INSTRUCTIONS_MAX_CHARS} characters (these have {len(instructions)})."
        ]
    if kind == Job.Kind.CLASSIFY:
        try:
            labels = labels_check(labels or [])
        except ValidationError as error:
            errors.update(error.message_dict)
    elif labels:
        errors["labels"] = ["Only classify jobs take labels."]
    try:
        found = documents_check(tenant=tenant, document_ids=documents)
    except ValidationError as error:
        errors.update(error.message_dict)
        found = []
    if errors:
        raise ValidationError(errors)
    job_options_check(tenant=tenant, model=model, mode=mode)
    prompts = document_prompts(
        tenant=tenant, kind=kind, documents=found, labels=labels or [],
        instructions=instructions, system=system,
    )  # fmt: skip
    inputs = [JobInput(p.prompt, document_id=p.document_id, truncated=p.truncated) for p in prompts]
    return _job_create(
        tenant=tenant, inputs=inputs, kind=kind, model=model, system=system,
        max_tokens=max_tokens, mode=mode, api_key=api_key, user=user, labels=labels or [],
        instructions=instructions.strip(),
    )  # fmt: skip


def job_options_check(*, tenant: Tenant, model: str, mode: str) -> None:
    """The model (the tenant may use it) and the mode (batch: the model has a batch API)."""
    if mode not in Job.Mode.values:
        raise ValidationError({"mode": [f"Use one of {', '.join(Job.Mode.values)}."]})
    if model:
        try:
            allowed = job_model_allowed(tenant=tenant, model=model)
        except GatewayError as error:
            raise ValidationError({"model": [error.message]}) from None
        if not allowed:
            raise ValidationError({"model": [f"The model '{model}' is not available to you."]})
    if mode == Job.Mode.BATCH:
        refusal = job_batch_refusal(tenant=tenant, model=model)
        if refusal:
            raise ValidationError({"mode": [refusal]})


def _job_create(
    *,
    tenant: Tenant,
    inputs: list[JobInput],
    kind: str,
    model: str,
    system: str,
    max_tokens: int | None,
    mode: str,
    api_key: APIKey | None,
    user: User | None,
    labels: list[str] | None = None,
    instructions: str = "",
) -> Job:
    with tenant_context(tenant), transaction.atomic():
        # One submission at a time per tenant (the table is the tenant's own), so parallel
        # requests cannot pass the active-jobs limit together.
        with connection.cursor() as cursor:
            table = connection.ops.quote_name(Job._meta.db_table)
            cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        limit = settings.JOBS_MAX_ACTIVE_PER_TENANT
        if Job.objects.filter(status__in=Job.ACTIVE).count() >= limit:
            raise JobLimitReached(
                f"This workspace already has {limit} jobs queued or running, the most allowed. "
                "Wait for one to finish or cancel one."
            )
        job = Job.objects.create(
            kind=kind, model=model, system=system, max_tokens=max_tokens,
            total_items=len(inputs), mode=mode, labels=labels or [], instructions=instructions,
            api_key_id=api_key.pk if api_key else None, user_id=user.pk if user else None,
        )  # fmt: skip
        items = [
            JobItem(
                job=job,
                index=index,
                input=item.prompt,
                custom_id=item.custom_id,
                document_id=item.document_id,
                truncated=item.truncated,
            )
            for index, item in enumerate(inputs)
        ]
        JobItem.objects.bulk_create(items, batch_size=500)
        audit_record(
            tenant=tenant, action="job.created", actor=user, target=str(job.public_id),
            data={"items": len(inputs), "kind": kind, "model": model, "mode": mode,
                  **({"api_key": api_key.key_id} if api_key else {})},
        )  # fmt: skip
        # A few task chains per job (each takes one of the tenant's bulk slots when it runs);
        # one for a batch, sent whole.
        chains = min(
            settings.JOBS_TENANT_CONCURRENCY, math.ceil(len(inputs) / settings.JOBS_BATCH_SIZE)
        )
        if mode == Job.Mode.BATCH:
            chains = 1
        transaction.on_commit(partial(job_enqueue, tenant, job.pk, chains=chains))
    return job


def job_enqueue(tenant: Tenant, job_id: int, *, chains: int = 1, countdown: float | None = None):
    """Queue `chains` task chains working on the job (queue `bulk`, in the tenant's schema)."""
    from ai.jobs.tasks import job_process_task

    for _ in range(chains):
        enqueue_for(tenant, job_process_task, countdown=countdown, job_id=job_id)


def job_batch_cancel_enqueue(tenant: Tenant, job_id: int) -> None:
    """Queue the request to cancel the job's provider batch (then a look at it)."""
    from ai.jobs.tasks import job_batch_cancel_task

    enqueue_for(tenant, job_batch_cancel_task, job_id=job_id)


def job_cancel(
    *, tenant: Tenant, job: Job, user: User | None = None, api_key: APIKey | None = None
) -> Job:
    """Cancel the job's pending items; items already running finish (and are billed). A
    batch-mode job's provider batch is asked to cancel after commit (best effort): what the
    provider already processed is still collected and billed. A job that is no longer active
    is returned unchanged. From a page, only admins and
    the job's submitter may cancel (PermissionDenied)."""
    if user is not None:
        membership = membership_for(tenant=tenant, user=user)
        if membership is None or not (membership.is_admin or job.user_id == user.pk):
            raise PermissionDenied("Only admins and the person who started a job can cancel it.")
    with tenant_context(tenant), transaction.atomic():
        # The job row, then its pending items. Workers lock an item and then update the job,
        # but only items they hold (running), which this does not touch: no lock cycle.
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status not in Job.ACTIVE:
            return locked
        now = timezone.now()
        cancelled = JobItem.objects.filter(job_id=locked.pk, status=JobItem.Status.PENDING).update(
            status=JobItem.Status.CANCELLED, finished_at=now, due_at=None
        )
        running = JobItem.objects.filter(job_id=locked.pk, status=JobItem.Status.RUNNING).exists()
        Job.objects.filter(pk=locked.pk).update(
            status=Job.Status.CANCELLED, cancelled_items=F("cancelled_items") + cancelled,
            finished_at=None if running else now,
        )  # fmt: skip
        if locked.mode == Job.Mode.BATCH and locked.batch_id:
            transaction.on_commit(partial(job_batch_cancel_enqueue, tenant, locked.pk))
        audit_record(
            tenant=tenant, action="job.cancelled", actor=user, target=str(locked.public_id),
            data={"cancelled_items": cancelled,
                  **({"api_key": api_key.key_id} if api_key else {})},
        )  # fmt: skip
        return Job.objects.get(pk=locked.pk)


def job_finalize(*, tenant: Tenant, job_id: int) -> Job | None:
    """Once no item is pending or running: the job is completed (failed if every item failed),
    `finished_at` is set and `job.completed` / `job.failed` is sent to the tenant's webhook
    endpoints, exactly once (the job row is locked and `finished_at` checked). A cancelled
    job's stragglers (put back after a retriable failure, or left by a dead worker) are
    cancelled here."""
    with tenant_context(tenant), transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.finished_at is not None:
            return job
        items = JobItem.objects.filter(job_id=job.pk)
        if job.status == Job.Status.CANCELLED:
            # Items a worker put back after the cancellation, and items whose worker died.
            now = timezone.now()
            late = items.filter(
                Q(status=JobItem.Status.PENDING)
                | Q(status=JobItem.Status.RUNNING, lease_expires_at__lt=now)
            ).update(status=JobItem.Status.CANCELLED, finished_at=now, due_at=None)
            job.cancelled_items += late
        if items.filter(status__in=[JobItem.Status.PENDING, JobItem.Status.RUNNING]).exists():
            return job
        event = None
        if job.status in Job.ACTIVE:
            all_failed = job.total_items > 0 and job.failed_items == job.total_items
            job.status = Job.Status.FAILED if all_failed else Job.Status.COMPLETED
            if all_failed:
                first = items.exclude(error="").values_list("error", flat=True).first() or ""
                job.error = f"Every item failed. First reason: {first}"[:300]
            event = "job.failed" if all_failed else "job.completed"
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at", "cancelled_items"])
        if event is not None:
            webhook_emit(tenant=tenant, event_type=event, data=job_event_data(job))
        return job


def job_event_data(job: Job) -> dict[str, Any]:
    """What a job's webhook event carries: counts and links, no prompt or output."""
    return {
        "job_id": str(job.public_id),
        "status": job.status,
        "total_items": job.total_items,
        "succeeded_items": job.succeeded_items,
        "failed_items": job.failed_items,
        "cancelled_items": job.cancelled_items,
        "input_tokens": job.input_tokens,
        "output_tokens": job.output_tokens,
        "cost_micros": job.cost_micros,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "results_url": f"/api/v1/jobs/{job.public_id}/results",
    }
