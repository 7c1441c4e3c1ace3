"""Provider batches through the gateway: many prompts for one model sent as ONE batch to a
provider that has a batch API (OpenAI Batch, Anthropic Message Batches), read back when it
ended, at the batch price.

    ticket = await batch_submit(tenant=..., feature=..., prompts=[BatchPrompt(...)], ...)
    state = await batch_poll(tenant=..., ticket=ticket)          # until state.ended
    outcomes = await batch_collect(tenant=..., ticket=..., batch=state, prompts=...)

Each prompt goes through the same switch, guardrails and routing as a call (ai.gateway.plan),
limited to models whose provider offers batches. Usage: every prompt is metered exactly once,
under its own request id, when its result is collected (failures too; a prompt the provider
never processed because the batch was cancelled is not a call and leaves no row). The price is
the catalog price in force at submission less the price version's `batch_discount_percent`
(ai.catalog.ModelPrice, 50 by default: the one place the batch discount is decided). The rows
are written before `batch_collect` returns, in one INSERT that skips request ids already
recorded: collecting the same batch again meters nothing twice."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import schema_context

from ai.gateway import metrics
from ai.gateway.attempts import ChainState, Deadline, provider_refusal, run_chain
from ai.gateway.config import Price, Snapshot, config_snapshot
from ai.gateway.core import _record_unplanned, chat_request, record_failure
from ai.gateway.errors import (
    AIDisabled,
    AllProvidersFailed,
    GatewayError,
    ModelNotAllowed,
    ProviderRefused,
)
from ai.gateway.guardrails import canary_for, redact
from ai.gateway.plan import Plan, _byok, plan_chat, snapshot_now
from ai.gateway.routing import Target, platform_credentials, route_targets, tenant_credentials
from ai.gateway.tokens import estimate_tokens
from ai.gateway.types import Caller
from ai.gateway.usage import UsageEntry, cost_micros, usage_record_many
from ai.providers import ADAPTERS
from ai.providers.base import (
    BatchAdapter,
    BatchLine,
    BatchLineResult,
    Credentials,
    ProviderBatch,
    ProviderError,
    Usage,
)
from billing.models import UsageRecord
from tenants.models import Tenant

logger = logging.getLogger(__name__)

Outcome = UsageRecord.Outcome
DEFAULT_DISCOUNT_PERCENT = 50  # a price row without the field set (never, after migrations)
NO_BATCH_API = (
    "Batch mode needs a model whose provider has a batch API (OpenAI or Anthropic); "
    '{what} has none. Use mode "direct".'
)


@dataclass(frozen=True)
class BatchPrompt:
    custom_id: str  # its id in the batch: [A-Za-z0-9_-]{1,64} (Anthropic's rule)
    request_id: str  # its usage record's id, unique per tenant
    text: str


@dataclass(frozen=True)
class BatchTicket:
    """What to keep to poll a submitted batch. `batch_id` is empty when every prompt was
    refused before sending (see `rejected`: custom id -> reason, already metered)."""

    batch_id: str
    model: str  # Atrium model key
    byok: bool  # sent with the tenant's own key (and so read back with it)
    status: str = ""
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass
class BatchOutcome:
    custom_id: str
    request_id: str
    status: str  # succeeded | failed | cancelled
    text: str = ""
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_micros: int = 0
    error: str = ""


def batch_capable(provider: str) -> bool:
    return bool(getattr(ADAPTERS.get(provider), "batches", False))


def batch_targets(
    *,
    snapshot: Snapshot,
    tenant: Tenant,
    feature: str,
    byok: dict[str, Credentials],
    requested_model: str | None,
) -> list[Target]:
    """The route's targets whose provider has a batch API, in route order (a requested model
    first). ModelNotAllowed, with the reason, when the requested model (or, with none, every
    model of the route) has no batch API."""
    targets = route_targets(
        snapshot=snapshot, tenant=tenant, feature=feature, kind="chat", byok=byok,
        requested_model=requested_model,
    )  # fmt: skip
    if requested_model:
        model = snapshot.models[requested_model]
        if not batch_capable(model.provider):
            raise ModelNotAllowed(NO_BATCH_API.format(what=f"the model '{requested_model}'"))
    capable = [target for target in targets if batch_capable(target.model.provider)]
    if not capable:
        names = ", ".join(f"'{target.model.key}'" for target in targets)
        raise ModelNotAllowed(NO_BATCH_API.format(what=f"this workspace's route ({names})"))
    return capable


def batch_check(*, tenant: Tenant, feature: str, model: str | None) -> None:
    """Sync: raise ModelNotAllowed (with the reason) unless a batch could be sent now."""
    snapshot = config_snapshot()
    byok = tenant_credentials(tenant, snapshot.generation)
    batch_targets(
        snapshot=snapshot, tenant=tenant, feature=feature, byok=byok, requested_model=model
    )


async def batch_submit(
    *,
    tenant: Tenant,
    feature: str,
    prompts: list[BatchPrompt],
    system: str = "",
    model: str | None = None,
    max_tokens: int | None = None,
    user_id: int | None = None,
    api_key_id: int | None = None,
) -> BatchTicket:
    """Send the prompts as one batch. A prompt the guardrails refuse is metered and left out
    (`ticket.rejected`). Raises AIDisabled, ModelNotAllowed, ProviderRefused or
    AllProvidersFailed for the whole batch, after metering each prompt's failed attempt."""
    plans: list[tuple[BatchPrompt, Plan]] = []
    rejected: dict[str, str] = {}
    for number, prompt in enumerate(prompts):
        caller = Caller(tenant, feature, prompt.request_id, user_id, api_key_id)
        try:
            plan = await plan_chat(
                caller=caller, messages=[{"role": "user", "content": prompt.text}],
                prompt=None, system=system, context=[], model=model, max_tokens=max_tokens,
                temperature=None, response_schema=None, use_cache=False,
            )  # fmt: skip
        except (AIDisabled, ModelNotAllowed) as error:  # the same for every prompt
            await _record_unsent(tenant, feature, prompts[number:], error, user_id, api_key_id)
            await _record_planned_failures(plans, error)
            raise
        except GatewayError as error:  # this prompt only (a guardrail)
            await _record_unsent(tenant, feature, [prompt], error, user_id, api_key_id)
            rejected[prompt.custom_id] = error.message
            continue
        plans.append((prompt, plan))
    if not plans:
        return BatchTicket("", model or "", False, rejected=rejected)
    first = plans[0][1]
    try:
        targets = batch_targets(
            snapshot=first.snapshot, tenant=tenant, feature=feature,
            byok=await _byok(first.caller, first.snapshot),
            requested_model=model,
        )  # fmt: skip
    except GatewayError as error:
        await _record_planned_failures(plans, error)
        raise
    state = ChainState()

    async def attempt(target: Target, timeout: float) -> ProviderBatch:
        lines = [
            BatchLine(prompt.custom_id, chat_request(plan, target, timeout))
            for prompt, plan in plans
        ]
        adapter = cast(BatchAdapter, ADAPTERS[target.model.provider])
        return await adapter.batch_create(lines, target.credentials, timeout=timeout)

    try:
        target, batch = await run_chain(
            targets, attempt, deadline=Deadline(settings.AI_DEADLINE_S), state=state
        )
    except GatewayError as error:
        await _record_planned_failures(plans, error, state)
        raise
    return BatchTicket(
        batch.id, target.model.key, target.credentials.byok, batch.status, rejected=rejected
    )


async def batch_poll(*, tenant: Tenant, ticket: BatchTicket) -> ProviderBatch:
    """The batch's state now. Raises AllProvidersFailed (try later) or GatewayError (its
    results cannot be read: the key that sent it is gone, the provider refuses)."""
    adapter, credentials = await _endpoint(tenant, ticket)
    try:
        return await adapter.batch_retrieve(
            ticket.batch_id, credentials, timeout=settings.AI_ATTEMPT_TIMEOUT_S
        )
    except ProviderError as error:
        raise _gateway_error(error) from None


async def batch_cancel(*, tenant: Tenant, ticket: BatchTicket) -> bool:
    """Ask the provider to cancel the batch (best effort: False if it could not be asked).
    Requests it already processed still come back, and are collected and billed."""
    try:
        adapter, credentials = await _endpoint(tenant, ticket)
        await adapter.batch_cancel(
            ticket.batch_id, credentials, timeout=settings.AI_ATTEMPT_TIMEOUT_S
        )
    except (GatewayError, ProviderError) as error:
        logger.warning("could not cancel provider batch %s: %s", ticket.batch_id, error)
        return False
    return True


async def batch_collect(
    *,
    tenant: Tenant,
    feature: str,
    ticket: BatchTicket,
    batch: ProviderBatch,
    prompts: list[BatchPrompt],
    priced_at: datetime,
    user_id: int | None = None,
    api_key_id: int | None = None,
) -> list[BatchOutcome]:
    """The outcome of each prompt of an ended batch, every one metered (once) before this
    returns. Safe to call again: request ids already in the ledger are skipped."""
    adapter, credentials = await _endpoint(tenant, ticket)
    try:
        lines = await adapter.batch_results(batch, credentials, timeout=settings.AI_DEADLINE_S)
    except ProviderError as error:
        raise _gateway_error(error) from None
    by_id = {line.custom_id: line for line in lines}
    snapshot = await snapshot_now()
    spec = snapshot.models.get(ticket.model)
    provider = spec.provider if spec else await sync_to_async(_provider_of)(ticket.model)
    price = snapshot.price_at(ticket.model, priced_at)
    batch_price = await sync_to_async(batch_price_of)(price) if price else None
    canary = canary_for(tenant.schema_name, "none")
    latency_ms = min(int((timezone.now() - priced_at).total_seconds() * 1000), 2**31 - 1)
    outcomes: list[BatchOutcome] = []
    entries: list[UsageEntry] = []
    for prompt in prompts:
        line = by_id.get(prompt.custom_id) or _missing(prompt.custom_id, batch)
        outcome = BatchOutcome(prompt.custom_id, prompt.request_id, "failed", model=ticket.model)
        usage = Usage()
        if line.kind == "succeeded":
            text, found = redact(line.text, canary)
            for finding in found:
                metrics.GUARDRAIL_HITS.labels(finding).inc()
            usage = line.usage or Usage(
                estimate_tokens(prompt.text), estimate_tokens(text), estimated=True
            )
            outcome.status, outcome.text, outcome.usage = "succeeded", text, usage
            outcome.cost_micros = cost_micros(usage, batch_price)
        elif line.kind == "cancelled":
            outcome.status = "cancelled"
            outcome.error = "Cancelled before the provider processed it."
            outcomes.append(outcome)
            continue  # never processed: no call to meter
        else:
            outcome.error = line.error or (
                "The provider's batch expired before it processed this prompt."
                if line.kind == "expired"
                else "The provider returned no result for this prompt."
            )
        outcomes.append(outcome)
        entries.append(
            UsageEntry(
                tenant_id=tenant.pk, request_id=prompt.request_id, feature=feature,
                user_id=user_id, api_key_id=api_key_id, provider=provider, model=ticket.model,
                price_id=price.id if price and outcome.cost_micros else None, usage=usage,
                cost_micros=outcome.cost_micros,
                billed_to=UsageRecord.BilledTo.TENANT_KEY if ticket.byok
                else UsageRecord.BilledTo.PLATFORM,
                latency_ms=latency_ms, cache_status=UsageRecord.CacheStatus.BYPASS,
                outcome=Outcome.OK if outcome.status == "succeeded" else Outcome.FAILED,
                attempts=1, error=outcome.error,
            )
        )  # fmt: skip
        metrics.CALLS.labels(feature, provider, ticket.model, entries[-1].outcome, "bypass").inc()
        metrics.TOKENS.labels(provider, ticket.model, "input").inc(usage.input_tokens)
        metrics.TOKENS.labels(provider, ticket.model, "output").inc(usage.output_tokens)
        metrics.COST.labels(provider, ticket.model).inc(outcome.cost_micros)
    if entries:
        # Before the caller stores any outcome, and not behind the answer: a worker that dies
        # after this leaves the rows, and the next collection skips them.
        await sync_to_async(usage_record_many)(entries)
    return outcomes


def batch_price_of(price: Price) -> Price:
    """The catalog price less the price version's batch discount (sync: reads the catalog)."""
    from ai.catalog.models import ModelPrice

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        percent = (
            ModelPrice.objects.filter(pk=price.id)
            .values_list("batch_discount_percent", flat=True)
            .first()
        )
    factor = (100 - (DEFAULT_DISCOUNT_PERCENT if percent is None else percent)) / 100
    return dataclasses.replace(
        price,
        input_per_mtok=price.input_per_mtok * factor,
        output_per_mtok=price.output_per_mtok * factor,
        cached_input_per_mtok=price.cached_input_per_mtok * factor,
    )


def _missing(custom_id: str, batch: ProviderBatch) -> BatchLineResult:
    """A prompt the provider gave no result line for: the batch's fate is its fate."""
    if batch.status in ("cancelled", "canceling", "cancelling"):
        return BatchLineResult(custom_id, "cancelled")
    if batch.status == "expired":
        return BatchLineResult(custom_id, "expired")
    return BatchLineResult(custom_id, "errored", error=batch.error)


def _provider_of(model_key: str) -> str:
    from ai.catalog.models import AIModel

    with schema_context(settings.PUBLIC_SCHEMA_NAME):
        provider = AIModel.objects.filter(key=model_key).values_list("provider", flat=True).first()
    if provider is None:
        raise ModelNotAllowed(f"The model '{model_key}' is no longer in the catalog.")
    return provider


def _gateway_error(error: ProviderError) -> GatewayError:
    if error.retriable:
        return AllProvidersFailed(
            "The provider is not answering right now; the batch will be looked at again.",
            retry_after=error.retry_after or 30.0,
        )
    return provider_refusal(error)


async def _endpoint(tenant: Tenant, ticket: BatchTicket) -> tuple[BatchAdapter, Credentials]:
    """The adapter and the key that sent the batch (its batches are only readable with it)."""
    snapshot = await snapshot_now()
    spec = snapshot.models.get(ticket.model)
    provider = spec.provider if spec else await sync_to_async(_provider_of)(ticket.model)
    if ticket.byok:
        keys = await sync_to_async(tenant_credentials)(tenant, snapshot.generation)
        credentials = keys.get(provider)
    else:
        credentials = platform_credentials(provider)
    if credentials is None or not batch_capable(provider):
        raise ProviderRefused(
            "The provider key that sent this batch is no longer configured; its results "
            "cannot be read."
        )
    return cast(BatchAdapter, ADAPTERS[provider]), credentials


async def _record_unsent(
    tenant: Tenant,
    feature: str,
    prompts: list[BatchPrompt],
    error: GatewayError,
    user_id: int | None,
    api_key_id: int | None,
) -> None:
    for prompt in prompts:
        await _record_unplanned(
            Caller(tenant, feature, prompt.request_id, user_id, api_key_id), error
        )


async def _record_planned_failures(
    plans: list[tuple[BatchPrompt, Plan]], error: GatewayError, state: ChainState | None = None
) -> None:
    for _, plan in plans:
        await record_failure(plan, error, state)
