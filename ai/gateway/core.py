"""complete() and embed(): the non-streaming gateway calls (streaming is in streaming.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from ai.gateway import metrics
from ai.gateway.attempts import ChainState, Deadline, run_chain
from ai.gateway.cache import CachedAnswer, cache_get, cache_put
from ai.gateway.errors import (
    AIDisabled,
    AllProvidersFailed,
    GatewayError,
    ModelNotAllowed,
    StructuredOutputInvalid,
)
from ai.gateway.guardrails import parse_structured, redact
from ai.gateway.ledger_writer import usage_write
from ai.gateway.plan import Plan, plan_chat, plan_embed
from ai.gateway.routing import Target
from ai.gateway.semantic import normalise_query, query_vector, semantic_lookup, semantic_store
from ai.gateway.tokens import estimate_tokens
from ai.gateway.types import Caller, Prompt, Result
from ai.gateway.usage import UsageEntry, cost_micros
from ai.providers import ADAPTERS
from ai.providers.base import ChatRequest, ContextDoc, Usage
from ai.providers.local import LABEL as LOCAL_LABEL
from billing.models import UsageRecord

Outcome = UsageRecord.Outcome
CacheStatus = UsageRecord.CacheStatus


def chat_request(plan: Plan, target: Target, timeout: float) -> ChatRequest:
    return ChatRequest(
        model=target.model.provider_model,
        messages=plan.messages,
        system=plan.system,
        max_tokens=plan.max_tokens,
        temperature=plan.temperature,
        context=plan.context,
        timeout=timeout,
    )


def measured_usage(plan: Plan, usage: Usage | None, text: str) -> Usage:
    """The provider's usage; our estimate (flagged) for what it did not report. A zero count
    for text that exists is treated as not reported (a stream cut before its usage event)."""
    if usage is not None and usage.input_tokens and (usage.output_tokens or not text):
        return usage
    return Usage(
        # prompt_tokens already counts the system prompt with the quoted context in it.
        (usage.input_tokens if usage else 0) or plan.prompt_tokens,
        (usage.output_tokens if usage else 0) or estimate_tokens(text),
        usage.cached_tokens if usage else 0,
        estimated=True,
    )


async def finish(
    plan: Plan,
    *,
    target: Target | None,
    text: str,
    usage: Usage | None,
    outcome: str,
    cache_status: str,
    state: ChainState | None = None,
    ttft_ms: int | None = None,
    error: str = "",
) -> Result:
    """Meter the call (exactly one usage record per request id) and build the result."""
    latency_ms = int((time.monotonic() - plan.started) * 1000)
    model = target.model if target else None
    served_from_cache = cache_status in (CacheStatus.EXACT, CacheStatus.SEMANTIC, CacheStatus.STALE)
    # A cache hit or a refused call sent nothing to a provider: no tokens, no cost.
    nothing_sent = model is None or served_from_cache
    usage = Usage() if nothing_sent else measured_usage(plan, usage, text)
    price = plan.snapshot.price_at(model.key, plan.started_at) if model else None
    cost = cost_micros(usage, price)
    byok = bool(target and target.credentials.byok)
    entry = UsageEntry(
        tenant_id=plan.caller.tenant.pk, request_id=plan.caller.request_id,
        feature=plan.caller.feature, user_id=plan.caller.user_id,
        api_key_id=plan.caller.api_key_id, provider=model.provider if model else "",
        model=model.key if model else "", price_id=price.id if price and cost else None,
        prompt_version=plan.prompt_version, usage=usage,
        cost_micros=cost,
        billed_to=UsageRecord.BilledTo.TENANT_KEY if byok else UsageRecord.BilledTo.PLATFORM,
        latency_ms=latency_ms, ttft_ms=ttft_ms, cache_status=cache_status, outcome=outcome,
        attempts=state.attempts if state else 0, error=error,
    )  # fmt: skip
    await usage_write(entry)
    provider = model.provider if model else ""
    metrics.CALLS.labels(
        plan.caller.feature, provider, model.key if model else "", outcome, cache_status
    ).inc()
    metrics.LATENCY.labels(plan.caller.feature, provider).observe(latency_ms / 1000)
    if model and not served_from_cache:
        metrics.TOKENS.labels(provider, model.key, "input").inc(usage.input_tokens)
        metrics.TOKENS.labels(provider, model.key, "output").inc(usage.output_tokens)
        metrics.COST.labels(provider, model.key).inc(cost)
    if state and target and target is not plan.targets[0]:
        metrics.FALLBACKS.labels(plan.caller.feature).inc()
    return Result(
        text=text, model=model.key if model else "", provider=provider, usage=usage,
        cost_micros=cost, cache_status=cache_status, outcome=outcome, latency_ms=latency_ms,
        ttft_ms=ttft_ms, prompt_version=plan.prompt_version,
        attempts=state.attempts if state else 0,
        fallback=bool(target and target is not plan.targets[0]),
        label=LOCAL_LABEL if provider == "local" else "", flags=list(plan.flags),
    )  # fmt: skip


async def record_failure(plan: Plan, error: GatewayError, state: ChainState | None) -> None:
    outcome = Outcome.REJECTED if error.status == 400 else Outcome.FAILED
    await finish(
        plan, target=None, text="", usage=None, outcome=outcome, cache_status=CacheStatus.MISS,
        state=state, error=error.message,
    )  # fmt: skip


async def cached_result(plan: Plan, *, stale: bool = False) -> Result | None:
    """An exact (or, when every provider failed, stale) hit, else a semantic one, else None."""
    if plan.fingerprint is None:
        return None
    status = CacheStatus.STALE if stale else CacheStatus.EXACT
    hit = await cache_get(plan.caller.tenant.schema_name, plan.fingerprint, stale=stale)
    if hit is None and not stale and plan.semantic_fingerprint is not None:
        plan.query_vector = await query_vector(normalise_query(plan.query))
        hit = await semantic_lookup(
            plan.caller.tenant, plan.semantic_fingerprint, plan.query_vector
        )
        status = CacheStatus.SEMANTIC
    if hit is None:
        return None
    target = next((t for t in plan.targets if t.model.key == hit.model), plan.targets[0])
    metrics.CACHE_HITS.labels(status).inc()
    return await finish(
        plan, target=target, text=hit.text, usage=None, outcome=Outcome.OK, cache_status=status
    )


async def remember(plan: Plan, target: Target, text: str) -> None:
    """Keep a complete, clean answer for the exact and semantic caches."""
    if plan.fingerprint is None:
        return
    answer = CachedAnswer(text, target.model.key, target.model.provider, plan.prompt_version)
    await cache_put(plan.caller.tenant.schema_name, plan.fingerprint, answer, ttl=plan.cache_ttl)
    if plan.semantic_fingerprint is not None and plan.query_vector is not None:
        await semantic_store(
            plan.caller.tenant, plan.caller.feature, plan.semantic_fingerprint,
            normalise_query(plan.query), plan.query_vector, answer, plan.cache_ttl,
        )  # fmt: skip


async def complete(
    *,
    caller: Caller,
    messages: list[dict[str, str]],
    prompt: Prompt | None = None,
    system: str = "",
    context: list[ContextDoc] | None = None,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    response_schema: dict[str, Any] | None = None,
    use_cache: bool = True,
    deadline_s: float | None = None,
) -> Result:
    """One answer. Raises GatewayError subclasses (AIDisabled, InputRejected, ModelNotAllowed,
    ProviderRefused, AllProvidersFailed, StructuredOutputInvalid); every call, failed or not,
    leaves exactly one usage record under `caller.request_id`."""
    plan = await plan_or_record(
        caller=caller, messages=messages, prompt=prompt, system=system,
        context=context or [], model=model, max_tokens=max_tokens, temperature=temperature,
        response_schema=response_schema, use_cache=use_cache,
    )  # fmt: skip
    result = await _complete_planned(plan, deadline_s)
    if response_schema is None:
        return result
    data, problem = parse_structured(result.text, response_schema)
    if problem is None:
        result.data = data
        return result
    metrics.VALIDATION_FAILURES.labels("first").inc()
    repair_messages = [
        *messages,
        {"role": "assistant", "content": result.text},
        {"role": "user", "content": f"That reply {problem}. Reply again with only valid JSON."},
    ]
    repair = await _complete_planned(
        await plan_or_record(
            caller=Caller(caller.tenant, caller.feature, f"{caller.request_id}:repair",
                          caller.user_id, caller.api_key_id),
            messages=repair_messages, prompt=prompt, system=system, context=context or [],
            model=model, max_tokens=max_tokens, temperature=temperature,
            response_schema=response_schema, use_cache=False,
        ),
        deadline_s,
    )  # fmt: skip
    data, problem = parse_structured(repair.text, response_schema)
    if problem is not None:
        metrics.VALIDATION_FAILURES.labels("repair").inc()
        raise StructuredOutputInvalid(f"The model's answer {problem}, even after one repair.")
    repair.data = data
    return repair


async def plan_or_record(**kwargs: Any) -> Plan:
    """Plan the call; a refusal at this stage (switch off, bad input) is metered too."""
    try:
        return await plan_chat(**kwargs)
    except GatewayError as error:
        await _record_unplanned(kwargs["caller"], error)
        raise


async def _record_unplanned(caller: Caller, error: GatewayError) -> None:
    outcome = Outcome.DISABLED if isinstance(error, AIDisabled) else Outcome.REJECTED
    await usage_write(
        UsageEntry(
            tenant_id=caller.tenant.pk, request_id=caller.request_id, feature=caller.feature,
            user_id=caller.user_id, api_key_id=caller.api_key_id,
            cache_status=CacheStatus.BYPASS, outcome=outcome, error=error.message,
        )
    )  # fmt: skip
    metrics.CALLS.labels(caller.feature, "", "", outcome, CacheStatus.BYPASS).inc()


async def _complete_planned(plan: Plan, deadline_s: float | None) -> Result:
    hit = await cached_result(plan)
    if hit is not None:
        return hit
    state = ChainState()
    deadline = Deadline(deadline_s or settings.AI_DEADLINE_S)

    async def attempt(target: Target, timeout: float):
        adapter = ADAPTERS[target.model.provider]
        return await adapter.complete(chat_request(plan, target, timeout), target.credentials)

    try:
        target, response = await run_chain(plan.targets, attempt, deadline=deadline, state=state)
    except AllProvidersFailed as error:
        stale = await cached_result(plan, stale=True)
        if stale is not None:
            return stale
        await record_failure(plan, error, state)
        raise
    except GatewayError as error:
        await record_failure(plan, error, state)
        raise
    text, found = redact(response.text, plan.canary)
    for finding in found:
        plan.flags.append(finding)
        metrics.GUARDRAIL_HITS.labels(finding).inc()
    # Only clean answers are reused, and for structured calls only valid ones.
    valid = plan.response_schema is None or parse_structured(text, plan.response_schema)[1] is None
    if not found and valid:
        await remember(plan, target, text)
    return await finish(
        plan, target=target, text=text, usage=response.usage, outcome=Outcome.OK,
        cache_status=CacheStatus.MISS if plan.fingerprint else CacheStatus.BYPASS, state=state,
    )  # fmt: skip


@dataclass
class EmbedResult:
    vectors: list[list[float]]
    model: str
    dimensions: int
    usage: Usage


async def embed(
    *,
    caller: Caller,
    texts: list[str],
    model: str | None = None,
    dimensions: int | None = None,
    pinned: bool = False,
    deadline_s: float | None = None,
) -> EmbedResult:
    """Embeddings for `texts` (same order), metered like any call. `dimensions` asks for
    vectors of that size. `pinned` (with `model`): that model or an error, never a fallback,
    for vectors that must sit in one index with the model's earlier ones."""
    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise GatewayError("Give at least one non-empty text to embed.")
    snapshot, targets = await plan_embed(caller=caller, model=model)
    if pinned and model:
        targets = [t for t in targets if t.model.key == model]
        if not targets:  # allowed, but no provider key for it
            raise ModelNotAllowed(f"The model '{model}' has no provider configured.")
    state = ChainState()
    plan = Plan(
        caller=caller, snapshot=snapshot, targets=targets, messages=[], system="", canary="",
        prompt_version="", context=[], max_tokens=0, temperature=None,
        prompt_texts=list(texts), fingerprint=None, cache_ttl=0,
        semantic_fingerprint=None, response_schema=None,
    )  # fmt: skip

    async def attempt(target: Target, timeout: float):
        adapter = ADAPTERS[target.model.provider]
        # Shortening is asked for only when needed: not every server takes the parameter.
        shorten = dimensions if dimensions != target.model.dimensions else None
        return await adapter.embed(
            target.model.provider_model, texts, target.credentials, timeout=timeout,
            dimensions=shorten,
        )  # fmt: skip

    try:
        target, response = await run_chain(
            targets, attempt, deadline=Deadline(deadline_s or settings.AI_DEADLINE_S), state=state
        )
    except GatewayError as error:
        await record_failure(plan, error, state)
        raise
    usage = response.usage or Usage(plan.prompt_tokens, 0, 0, estimated=True)
    result = await finish(
        plan, target=target, text="", usage=usage, outcome=Outcome.OK,
        cache_status=CacheStatus.BYPASS, state=state,
    )  # fmt: skip
    width = len(response.vectors[0]) if response.vectors else 0
    if dimensions and width != dimensions:  # billed above: the provider did the work
        raise GatewayError(
            f"The model {result.model} gave {width}-dimensional vectors, not {dimensions}."
        )
    return EmbedResult(response.vectors, result.model, width, result.usage)
