"""Jobs in batch mode: the job's items go to the provider as ONE batch (ai.gateway.batch) at
the batch price, instead of one gateway call each. What one task does with such a job:

1. submit: claim the pending items (a conditional update under the job's lock: `running`,
   with a lease and a claim token, each with its request id for this attempt, derived like a
   direct item's), send them, store the batch id; the job becomes `submitted`.
2. poll: look at the batch; not ended yet: come back in JOBS_BATCH_POLL_S.
3. collect: read every result; the gateway meters each item under its own request id (the
   ledger skips ids already recorded), then each item is finished with a conditional update
   (only while still `running`), the job's counts moving in the same transaction.

Exactly once: running collection twice, or after a worker died between metering and storing,
meters nothing twice and finishes every item once. Failures: the provider refusing the batch
fails its items with the reason; an outage or a kill switch puts them back (retried like direct
items, JOBS_MAX_ATTEMPTS, under new request ids); a batch that expires or fails fails the items
it left without a result, with the reason (they are not re-sent in direct mode: resubmit them).
A worker that dies while sending leaves the items `running` past their lease: they are sent
again (the tenant is still billed once; the lost batch, if the provider got it, is not read).
Cancel: the provider is asked to cancel the batch (best effort); what it already processed is
still collected and billed, the rest is cancelled."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.gateway import (
    AIDisabled,
    AllProvidersFailed,
    BatchOutcome,
    BatchPrompt,
    BatchTicket,
    GatewayError,
    batch_cancel_sync,
    batch_collect_sync,
    batch_poll_sync,
    batch_submit_sync,
)
from ai.jobs.documents import answer_outcome
from ai.jobs.processing import RETRY_BACKOFF_MAX_S, Step, item_request_id
from ai.jobs.selectors import FEATURE
from ai.jobs.services import job_finalize
from ai.models import Job, JobItem
from tenants.models import Tenant

logger = logging.getLogger(__name__)

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = JobItem.Status
RETRIABLE = (AllProvidersFailed, AIDisabled)
SUBMITTING = "submitting"  # Job.batch_status while a worker sends the batch


def batch_custom_id(index: int) -> str:
    """An item's id in its batch (Anthropic allows [A-Za-z0-9_-]{1,64})."""
    return f"item-{index}"


def job_ticket(job: Job) -> BatchTicket:
    return BatchTicket(job.batch_id, job.batch_model, job.batch_byok, job.batch_status)


def job_batch_step(*, tenant: Tenant, job: Job) -> Step:
    """Submit the job's batch, or look at it and collect its results once it ended. In the
    tenant's schema (the caller's)."""
    if not job.batch_id:
        return _submit(tenant, job)
    return _poll(tenant, job)


def job_batch_cancel(*, tenant: Tenant, job_id: int) -> None:
    """Ask the provider to cancel the job's batch (best effort); the next look collects what
    it had already processed."""
    with tenant_context(tenant):
        job = Job.objects.filter(pk=job_id).first()
        if job is None or not job.batch_id or job.finished_at is not None:
            return
        batch_cancel_sync(tenant=tenant, ticket=job_ticket(job))


def _takeable(now) -> Q:
    return (
        Q(status=PENDING, due_at__isnull=True)
        | Q(status=PENDING, due_at__lte=now)
        | Q(status=RUNNING, lease_expires_at__lt=now)  # a sender that died
    )


def _submit(tenant: Tenant, job: Job) -> Step:
    token = uuid.uuid4()
    now = timezone.now()
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status not in Job.ACTIVE or locked.batch_id:
            return _after(tenant, job, 0)
        items = list(JobItem.objects.filter(job_id=job.pk).filter(_takeable(now)).order_by("index"))
        if not items:
            return _after(tenant, job, 0)
        prompts: list[BatchPrompt] = []
        for item in items:
            request_id = item_request_id(job, item.index, item.attempts + 1)
            prompts.append(BatchPrompt(batch_custom_id(item.index), request_id, item.input))
            JobItem.objects.filter(pk=item.pk).update(
                status=RUNNING, claim_token=token, claims=F("claims") + 1, request_id=request_id,
                lease_expires_at=now + timedelta(seconds=settings.JOBS_ITEM_LEASE_S),
            )  # fmt: skip
        Job.objects.filter(pk=job.pk).update(
            status=Job.Status.RUNNING if locked.status == Job.Status.QUEUED else locked.status,
            started_at=locked.started_at or now, batch_status=SUBMITTING,
        )  # fmt: skip
    try:
        ticket = batch_submit_sync(
            tenant=tenant, feature=FEATURE, prompts=prompts, system=job.system,
            model=job.model or None, max_tokens=job.max_tokens, user_id=job.user_id,
            api_key_id=job.api_key_id,
        )  # fmt: skip
    except RETRIABLE as error:
        return _put_back(tenant, job, token, items, error.message)
    except GatewayError as error:
        _finish(job, token, {item.pk: {"status": FAILED, "error": error.message} for item in items})
        return _after(tenant, job, len(items))
    except Exception:
        logger.exception("bulk job %s: sending its batch failed unexpectedly", job.public_id)
        return _put_back(tenant, job, token, items, "An unexpected error stopped this batch.")
    return _submitted(tenant, job, token, items, ticket)


def _submitted(
    tenant: Tenant, job: Job, token: uuid.UUID, items: list[JobItem], ticket: BatchTicket
) -> Step:
    index_of = {batch_custom_id(item.index): item for item in items}
    rejected = {index_of[cid].pk: reason for cid, reason in ticket.rejected.items()}
    cancel_after = False
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        held = JobItem.objects.filter(job_id=job.pk, status=RUNNING, claim_token=token)
        if locked.batch_id or not held.exists():
            # Another worker took the items over (this one outlived their lease): its batch
            # is the job's; this one is cancelled and never read.
            cancel_after = bool(ticket.batch_id)
        else:
            if ticket.batch_id:
                # At the provider now: no lease (a poll, not a worker, follows them).
                held.exclude(pk__in=list(rejected)).update(lease_expires_at=None)
                Job.objects.filter(pk=job.pk).update(
                    batch_id=ticket.batch_id, batch_model=ticket.model, batch_byok=ticket.byok,
                    batch_status=ticket.status,
                    status=Job.Status.SUBMITTED if locked.status in Job.ACTIVE else locked.status,
                )  # fmt: skip
                cancel_after = locked.status == Job.Status.CANCELLED
            else:
                Job.objects.filter(pk=job.pk).update(batch_status="")
    if cancel_after:
        batch_cancel_sync(tenant=tenant, ticket=ticket)
    if rejected:
        _finish(job, token, {pk: {"status": FAILED, "error": msg} for pk, msg in rejected.items()})
    if not ticket.batch_id:
        return _after(tenant, job, len(items))
    return Step(len(items), wait_s=float(settings.JOBS_BATCH_POLL_S))


def _put_back(
    tenant: Tenant, job: Job, token: uuid.UUID, items: list[JobItem], message: str
) -> Step:
    """The batch could not be sent for now: the items wait and are sent again (each attempt
    under its own request id), or fail once they had JOBS_MAX_ATTEMPTS."""
    attempt = items[0].attempts + 1  # the items of one submission share their history
    Job.objects.filter(pk=job.pk, batch_id="").update(batch_status="")
    if attempt >= settings.JOBS_MAX_ATTEMPTS:
        error = f"{message} (gave up after {attempt} attempts)"
        _finish(job, token, {item.pk: {"status": FAILED, "error": error} for item in items})
        return _after(tenant, job, len(items))
    delay = min(RETRY_BACKOFF_MAX_S, settings.JOBS_RETRY_BACKOFF_S * 2 ** (attempt - 1))
    JobItem.objects.filter(pk__in=[i.pk for i in items], status=RUNNING, claim_token=token).update(
        status=PENDING, attempts=F("attempts") + 1, error=message[:300], claim_token=None,
        lease_expires_at=None, due_at=timezone.now() + timedelta(seconds=delay),
    )  # fmt: skip
    return Step(0, wait_s=max(1.0, float(delay)))


def _poll(tenant: Tenant, job: Job) -> Step:
    ticket = job_ticket(job)
    try:
        batch = batch_poll_sync(tenant=tenant, ticket=ticket)
    except RETRIABLE:
        return Step(0, wait_s=float(settings.JOBS_BATCH_POLL_S))
    except GatewayError as error:
        return _fail_open_items(tenant, job, error.message)
    if not batch.ended:
        Job.objects.filter(pk=job.pk, finished_at__isnull=True).update(batch_status=batch.status)
        return Step(0, wait_s=float(settings.JOBS_BATCH_POLL_S))
    open_items = list(JobItem.objects.filter(job_id=job.pk, status=RUNNING).order_by("index"))
    if not open_items:  # collected already (a duplicate poll)
        return _after(tenant, job, 0)
    prompts = [
        BatchPrompt(batch_custom_id(item.index), item.request_id, item.input) for item in open_items
    ]
    try:
        outcomes = batch_collect_sync(
            tenant=tenant, feature=FEATURE, ticket=ticket, batch=batch, prompts=prompts,
            priced_at=job.started_at or job.created_at, user_id=job.user_id,
            api_key_id=job.api_key_id,
        )  # fmt: skip
    except RETRIABLE:
        return Step(0, wait_s=float(settings.JOBS_BATCH_POLL_S))
    except GatewayError as error:
        return _fail_open_items(tenant, job, error.message)
    by_id = {batch_custom_id(item.index): item for item in open_items}
    _finish(job, None, {by_id[o.custom_id].pk: _fields(o) for o in outcomes})
    Job.objects.filter(pk=job.pk).update(batch_status=batch.status)
    return _after(tenant, job, len(outcomes))


def _fields(outcome: BatchOutcome) -> dict[str, object]:
    fields: dict[str, object] = {"status": outcome.status, "error": outcome.error}
    if outcome.status == SUCCEEDED:
        fields.update(
            output=outcome.text, model=outcome.model, input_tokens=outcome.usage.input_tokens,
            output_tokens=outcome.usage.output_tokens, cost_micros=outcome.cost_micros,
        )  # fmt: skip
    return fields


def _fail_open_items(tenant: Tenant, job: Job, message: str) -> Step:
    """The batch cannot be read (its key is gone, the provider refuses): its items fail."""
    held = JobItem.objects.filter(job_id=job.pk, status=RUNNING).values_list("pk", flat=True)
    _finish(job, None, {pk: {"status": FAILED, "error": message} for pk in held})
    return _after(tenant, job, 0)


def _finish(job: Job, token: uuid.UUID | None, outcomes: dict[int, dict[str, object]]) -> None:
    """Finish each item that is still running (and held by `token`, when given), moving the
    job's counts in the same transaction. Items already finished are left alone, so running
    this twice changes nothing the second time."""
    if not outcomes:
        return
    counts = {"succeeded_items": 0, "failed_items": 0, "cancelled_items": 0}
    totals = {"input_tokens": 0, "output_tokens": 0, "cost_micros": 0}
    now = timezone.now()
    with transaction.atomic():
        # The job row first, as cancelling, finalizing and direct processing do.
        Job.objects.select_for_update().filter(pk=job.pk).first()
        for pk, fields in outcomes.items():
            if fields["status"] == SUCCEEDED:
                # As for a direct call: a classify answer naming no label fails the item.
                status, answer = answer_outcome(job, str(fields.get("output", "")))
                fields = {**fields, **answer, "status": status}
            fields = {**fields, "error": str(fields.get("error", ""))[:300]}
            held = JobItem.objects.filter(pk=pk, status=RUNNING)
            if token is not None:
                held = held.filter(claim_token=token)
            # An item the provider never processed (a cancelled batch) made no call.
            attempts = F("attempts") + (0 if fields["status"] == CANCELLED else 1)
            if not held.update(
                **fields, attempts=attempts, finished_at=now, claim_token=None,
                lease_expires_at=None, due_at=None,
            ):  # fmt: skip
                continue
            counts[f"{fields['status']}_items"] += 1
            for name in totals:
                totals[name] += int(fields.get(name, 0) or 0)  # type: ignore[call-overload]
        changes = {name: F(name) + value for name, value in {**counts, **totals}.items() if value}
        if changes:
            Job.objects.filter(pk=job.pk).update(**changes)


def _after(tenant: Tenant, job: Job, processed: int) -> Step:
    """Finalize when nothing is left; else say when to look again."""
    job_finalize(tenant=tenant, job_id=job.pk)
    state = Job.objects.filter(pk=job.pk).values("finished_at", "batch_id").first()
    if state is None or state["finished_at"] is not None:
        return Step(processed)
    now = timezone.now()
    items = JobItem.objects.filter(job_id=job.pk)
    if not state["batch_id"] and items.filter(_takeable(now)).exists():
        return Step(processed, more=True)
    return Step(processed, wait_s=float(settings.JOBS_BATCH_POLL_S))
