"""What one bulk task does with a job: take items one at a time (a conditional claim that
skips rows other workers hold), call the gateway for each, record the outcome, and say whether
work is left now or later. The task (tasks.py) adds the tenant's slot and the requeueing.

Exactly-once billing: an item's request id is derived from the job and the item's index (and
the attempt, once a call has failed: every call leaves its own usage row, and a retry must not
be swallowed as a duplicate of the failed one). A worker that dies mid-call leaves its item
`running`; once its lease passes, the item is taken again and called under the *same* request
id, so the usage ledger (unique per tenant and request id) keeps one row. Outcomes are written
with a conditional update on the claim token, so a late duplicate never overwrites."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import F, Min, Q
from django.utils import timezone
from django_tenants.utils import tenant_context

from ai.gateway import AIDisabled, AllProvidersFailed, Caller, GatewayError, Result, complete
from ai.jobs.documents import answer_outcome
from ai.jobs.selectors import FEATURE, job_provider_key
from ai.jobs.services import job_finalize
from ai.models import Job, JobItem
from saas.lib.semaphore import Lease, Semaphore
from saas.lib.worker_loop import run_async
from tenants.models import Tenant

logger = logging.getLogger(__name__)

PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED = JobItem.Status
# Errors that may pass (providers down, a kill switch): the item is tried again later.
# Anything else the gateway raises (bad input, a model not allowed, a provider refusing the
# request) would fail the same way again: the item fails at once.
RETRIABLE = (AllProvidersFailed, AIDisabled)
RETRY_BACKOFF_MAX_S = 300
# A task stops taking items after this long, so it stays far below its time limits and the
# broker's visibility timeout; what is left goes to its continuation.
STEP_BUDGET_S = 120
# An item whose worker died this many times is failed rather than taken again (it may be what
# kills them).
MAX_WORKER_LOSSES = 3
# How long a task waits for work that is not due yet before looking again (at most).
WAIT_MAX_S = 300.0


@dataclass(frozen=True)
class Step:
    processed: int = 0
    more: bool = False  # items can be taken right now
    wait_s: float | None = None  # nothing to take now; items come due (or free) in this long

    @property
    def done(self) -> bool:
        return not self.more and self.wait_s is None


def provider_slots() -> Semaphore:
    """Bulk model calls in flight per provider, across every worker and tenant."""
    return Semaphore("bulk-provider", lease_s=60)


def item_request_id(job: Job, index: int, attempt: int) -> str:
    """The gateway request id of an item's `attempt`-th model call (1-based)."""
    base = f"job:{job.public_id}:{index}"
    return base if attempt <= 1 else f"{base}:retry{attempt - 1}"


def job_step(*, tenant: Tenant, job_id: int, max_items: int) -> Step:
    """Work on the job for at most `max_items` items (and STEP_BUDGET_S), in the tenant's
    schema (a batch-mode job: submit, poll or collect its provider batch, ai/jobs/batch.py).
    Finalizes the job when nothing is left."""
    with tenant_context(tenant):
        job = Job.objects.filter(pk=job_id).first()
        if job is None or job.finished_at is not None:
            return Step()
        Job.objects.filter(pk=job.pk).update(touched_at=timezone.now())
        if job.mode == Job.Mode.BATCH:
            from ai.jobs.batch import job_batch_step  # it builds on this module

            return job_batch_step(tenant=tenant, job=job)
        provider = job_provider_key(tenant=tenant, model=job.model)
        deadline = time.monotonic() + STEP_BUDGET_S
        processed = 0
        while processed < max_items and time.monotonic() < deadline:
            lease = _provider_lease(provider)
            if lease is None:  # the provider's bulk slots are all taken: back off
                return Step(processed, wait_s=2.0)
            with lease:
                item = _claim(job)
                if item is None:
                    break
                retriable_failure = _process(tenant, job, item)
            processed += 1
            if retriable_failure:
                # Providers are down (or AI is off): leave the rest for after the backoff
                # instead of spending every item's attempts on the same outage.
                break
        return _next(tenant, job, processed)


class _Uncapped:
    """Stands in for a lease when Redis is unreachable (working uncapped beats stopping)."""

    def __enter__(self) -> _Uncapped:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _provider_lease(provider: str) -> Lease | _Uncapped | None:
    try:
        return provider_slots().acquire(provider, limit=settings.JOBS_PROVIDER_CONCURRENCY)
    except redis.RedisError as error:
        logger.warning("bulk provider slots unavailable, working uncapped: %s", error)
        return _Uncapped()


def _claim(job: Job) -> JobItem | None:
    """Take the next item that is pending and due, or running with its lease passed (its
    worker died). None when there is none (or the job is no longer active)."""
    while True:
        now = timezone.now()
        with transaction.atomic():
            item = (
                JobItem.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(job_id=job.pk, job__status__in=Job.ACTIVE)
                .filter(
                    Q(status=PENDING, due_at__isnull=True)
                    | Q(status=PENDING, due_at__lte=now)
                    | Q(status=RUNNING, lease_expires_at__lt=now)
                )
                .order_by("index")
                .first()
            )
            if item is None:
                return None
            lost = item.claims - item.attempts >= MAX_WORKER_LOSSES
            if not lost:
                item.claim_token = uuid.uuid4()
                item.lease_expires_at = now + timedelta(seconds=settings.JOBS_ITEM_LEASE_S)
                JobItem.objects.filter(pk=item.pk).update(
                    status=RUNNING, claim_token=item.claim_token,
                    lease_expires_at=item.lease_expires_at, claims=F("claims") + 1,
                )  # fmt: skip
        # Job rows are updated outside an item's lock (the lock order is job, then items).
        if lost:
            _record(
                job, item, status=FAILED, attempts=item.attempts,
                error=f"The worker processing this item stopped {MAX_WORKER_LOSSES} times; "
                "it was not tried again.",
            )  # fmt: skip
            continue
        Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
            status=Job.Status.RUNNING, started_at=now
        )
        return item


def _process(tenant: Tenant, job: Job, item: JobItem) -> bool:
    """One model call for the item and its outcome; True if it failed in a way that may pass.
    `attempts` counts the calls whose outcome was recorded: a call whose worker died is not
    counted, so the item's next take makes it again under the same request id."""
    attempt = item.attempts + 1
    request_id = item_request_id(job, item.index, attempt)
    caller = Caller(tenant, FEATURE, request_id, user_id=job.user_id, api_key_id=job.api_key_id)
    try:
        # On the worker process's own event loop: the provider connection serves every item.
        result = run_async(
            complete, caller=caller, messages=[{"role": "user", "content": item.input}],
            system=job.system, model=job.model or None, max_tokens=job.max_tokens,
        )  # fmt: skip
    except RETRIABLE as error:
        return _failed(job, item, attempt, request_id, error.message, retriable=True)
    except GatewayError as error:
        return _failed(job, item, attempt, request_id, error.message, retriable=False)
    except Exception:
        # A bug (or the task's soft time limit) must not leave the item to be taken forever.
        logger.exception("bulk job %s item %s: unexpected error", job.public_id, item.index)
        message = "An unexpected error stopped this item."
        return _failed(job, item, attempt, request_id, message, retriable=True)
    _succeeded(job, item, attempt, request_id, result)
    return False


def _succeeded(job: Job, item: JobItem, attempt: int, request_id: str, result: Result) -> None:
    # The call succeeded; its answer may still fail the item (a classify answer naming no
    # label), its tokens and cost counted all the same.
    status, answer = answer_outcome(job, result.text)
    _record(
        job, item, status=status, attempts=attempt, request_id=request_id,
        model=result.model, input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens, cost_micros=result.cost_micros, **answer,
    )  # fmt: skip


def _failed(
    job: Job, item: JobItem, attempt: int, request_id: str, message: str, *, retriable: bool
) -> bool:
    if retriable and attempt < settings.JOBS_MAX_ATTEMPTS:
        delay = min(RETRY_BACKOFF_MAX_S, settings.JOBS_RETRY_BACKOFF_S * 2 ** (attempt - 1))
        JobItem.objects.filter(pk=item.pk, status=RUNNING, claim_token=item.claim_token).update(
            status=PENDING, attempts=attempt, error=message[:300], request_id=request_id,
            due_at=timezone.now() + timedelta(seconds=delay), claim_token=None,
            lease_expires_at=None,
        )  # fmt: skip
        return True
    if retriable:
        message = f"{message} (gave up after {attempt} attempts)"
    _record(job, item, status=FAILED, attempts=attempt, request_id=request_id, error=message)
    return retriable


def _record(job: Job, item: JobItem, *, status: str, attempts: int, **fields: object) -> None:
    """Finish the item (if this worker still holds it) and move the job's counts with it."""
    fields["error"] = str(fields.get("error", ""))[:300]
    with transaction.atomic():
        # The job row first, as cancelling and finalizing do: no lock cycle with them.
        Job.objects.select_for_update().filter(pk=job.pk).first()
        held = JobItem.objects.filter(pk=item.pk, claim_token=item.claim_token).exclude(
            status__in=[SUCCEEDED, FAILED, CANCELLED]
        )
        if not held.update(
            status=status, attempts=attempts, finished_at=timezone.now(), claim_token=None,
            lease_expires_at=None, due_at=None, **fields,
        ):  # fmt: skip
            return  # another worker took it over (this one outlived its lease)
        counts: dict[str, object] = {
            "succeeded_items" if status == SUCCEEDED else "failed_items": F(
                "succeeded_items" if status == SUCCEEDED else "failed_items"
            )
            + 1
        }
        for name in ("input_tokens", "output_tokens", "cost_micros"):
            if fields.get(name):
                counts[name] = F(name) + fields[name]
        Job.objects.filter(pk=job.pk).update(**counts)


def _next(tenant: Tenant, job: Job, processed: int) -> Step:
    """Whether items can be taken now, later (how long), or the job is finished."""
    job_finalize(tenant=tenant, job_id=job.pk)  # a no-op while anything is left
    state = Job.objects.filter(pk=job.pk).values("status", "finished_at").first()
    if state is None or state["finished_at"] is not None:
        return Step(processed)
    now = timezone.now()
    open_items = JobItem.objects.filter(job_id=job.pk, status__in=[PENDING, RUNNING])
    takeable = (
        Q(status=PENDING, due_at__isnull=True)
        | Q(status=PENDING, due_at__lte=now)
        | Q(status=RUNNING, lease_expires_at__lt=now)
    )
    if state["status"] in Job.ACTIVE and open_items.filter(takeable).exists():
        return Step(processed, more=True)
    # Waiting for retries to come due, or for items other workers hold (or held, if they died).
    soonest = open_items.aggregate(
        due=Min("due_at", filter=Q(status=PENDING)),
        lease=Min("lease_expires_at", filter=Q(status=RUNNING)),
    )
    times = [t for t in soonest.values() if t is not None]
    wait = min((t - now).total_seconds() for t in times) if times else 1.0
    return Step(processed, wait_s=min(WAIT_MAX_S, max(1.0, wait)))
