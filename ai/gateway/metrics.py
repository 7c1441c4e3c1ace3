"""Gateway metrics on /metrics. Labels are bounded sets (feature, provider, model, outcome);
no tenant label, since the number of tenants is not bounded."""

from prometheus_client import Counter, Gauge, Histogram

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
BREAKER_OPEN = Gauge(
    "atrium_ai_breaker_open", "1 while a platform breaker is open.", ["provider", "model"]
)
GUARDRAIL_HITS = Counter("atrium_ai_guardrail_hits_total", "Guardrail findings.", ["kind"])
VALIDATION_FAILURES = Counter(
    "atrium_ai_validation_failures_total", "Structured outputs that failed validation.", ["stage"]
)
