"""Gateway metrics on /metrics. Labels are bounded sets (feature, provider, model, outcome);
no tenant label, since the number of tenants is not bounded."""

from prometheus_client import Counter, Gauge, Histogram

from saas.lib.redis import sync_client

CALLS = Counter(
    "atrium_ai_calls_total", "Gateway calls.", ["feature", "provider", "model", "outcome", "cache"]
)
TOKENS = Counter("atrium_ai_tokens_total", "Tokens.", ["provider", "model", "direction"])
COST = Counter("atrium_ai_cost_micros_total", "Cost in micro-dollars.", ["provider", "model"])
LATENCY = Histogram(
    "atrium_ai_latency_seconds", "Gateway call latency.", ["feature", "provider"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)  # fmt: skip
TTFT = Histogram(
    "atrium_ai_ttft_seconds", "Time to first token.", ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)  # fmt: skip
CACHE_HITS = Counter("atrium_ai_cache_hits_total", "Cache hits.", ["kind"])
FALLBACKS = Counter("atrium_ai_fallbacks_total", "Calls served by a fallback model.", ["feature"])
RETRIES = Counter("atrium_ai_retries_total", "Provider attempts retried.", ["provider", "kind"])
BREAKER_OPENED = Counter(
    "atrium_ai_breaker_opened_total", "Circuit breakers opened.", ["provider", "model"]
)
BREAKER_STATE = Gauge(
    "atrium_ai_breaker_state",
    "Platform circuit breakers: 0 closed, 1 half-open, 2 open (read from Redis at scrape time).",
    ["provider", "model"],
)
GUARDRAIL_HITS = Counter("atrium_ai_guardrail_hits_total", "Guardrail findings.", ["kind"])
VALIDATION_FAILURES = Counter(
    "atrium_ai_validation_failures_total", "Structured outputs that failed validation.", ["stage"]
)
USAGE_PENDING = Gauge(
    "atrium_usage_pending", "Usage rows queued in this process, not yet in the ledger."
)
USAGE_WRITE_ERRORS = Counter(
    "atrium_usage_write_errors_total", "Failed usage-ledger writes (each is retried or logged)."
)


def refresh_breaker_state() -> None:
    """Set BREAKER_STATE from the shared breakers (platform keys only: bounded by the catalog).
    Breakers that closed again drop back to 0."""
    from ai.gateway.breaker import PREFIX

    states: dict[tuple[str, str], int] = dict.fromkeys(_known_breakers(), 0)
    for raw in sync_client().scan_iter(match=f"{PREFIX}platform:*", count=500):
        key = raw.decode()
        provider, model, suffix = key.removeprefix(f"{PREFIX}platform:").split(":", 2)
        level = {"open": 2, "half": 1}.get(suffix)
        if level is not None:
            states[(provider, model)] = max(states.get((provider, model), 0), level)
    for (provider, model), level in states.items():
        BREAKER_STATE.labels(provider, model).set(level)


def _known_breakers() -> list[tuple[str, str]]:
    return [tuple(labels) for labels in BREAKER_STATE._metrics]
