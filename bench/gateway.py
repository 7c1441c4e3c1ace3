"""Gateway overhead: the gateway path minus a direct SDK call to the same simulator.

Both paths call the provider simulator (run as its own process, so its timing does not share
this interpreter) with the official openai SDK, non-streaming, in one event loop; calls are
interleaved (direct, gateway, direct, ...) so drift affects both alike. The gateway path does
everything a real call does (switches, guardrails, routing, breaker check, usage record) with
the answer cache off. Usage rows are written behind the answer (the default); the c=10 run is
repeated with every call waiting for its row, to show what that costs, and the ledger is
counted at the end: one row per gateway call. Then the cache hit paths: exact and semantic
(with the local embedding).

Goals: overhead p50 <= 1 ms and p99 <= 3 ms at concurrency 1, p50 <= 5 ms at concurrency 10;
exact-cache hit p50 <= 2 ms; semantic-cache hit p50 <= 15 ms."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid

from asgiref.sync import sync_to_async

from bench.common import goal, percentile, use_scratch_database, use_scratch_redis, write_result

NAME = "gateway"
CALLS_C1 = int(os.environ.get("BENCH_GATEWAY_CALLS", "400"))
CALLS_C10 = int(os.environ.get("BENCH_GATEWAY_CALLS_C10", "100"))  # per worker
QUESTION = [{"role": "user", "content": "What is the refund policy for annual plans?"}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_simulator(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "ai.simulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the simulator did not start")


def _setup(base_url: str):
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from tenants.services.accounts import user_ensure
    from tenants.services.provisioning import tenant_provision

    settings.OPENAI_API_KEY = "sk-bench-000000000000"
    settings.OPENAI_BASE_URL = f"{base_url}/v1"
    call_command("migrate_schemas", verbosity=0)
    owner = user_ensure(email="bench@example.test", password="bench-Password-123")
    return tenant_provision(slug="bench", name="Bench", owner=owner)


async def _measure(tenant, base_url: str) -> dict[str, float]:
    import openai
    from django.conf import settings

    from ai.gateway import Caller, complete

    direct_client = openai.AsyncOpenAI(
        api_key="sk-bench-000000000000", base_url=f"{base_url}/v1", max_retries=0
    )

    async def direct() -> float:
        started = time.perf_counter()
        await direct_client.chat.completions.create(
            model="gpt-4o-mini", messages=QUESTION, max_tokens=512
        )
        return time.perf_counter() - started

    async def gateway(messages=QUESTION, use_cache=False, feature="chat") -> float:
        started = time.perf_counter()
        await complete(
            caller=Caller(tenant, feature, uuid.uuid4().hex, user_id=1),
            messages=messages,
            use_cache=use_cache,
        )
        return time.perf_counter() - started

    async def pairs(count: int) -> tuple[list[float], list[float]]:
        direct_times, gateway_times = [], []
        for _ in range(count):
            direct_times.append(await direct())
            gateway_times.append(await gateway())
        return direct_times, gateway_times

    async def concurrently(workers: int) -> tuple[list[float], list[float]]:
        results = await asyncio.gather(*(pairs(CALLS_C10) for _ in range(workers)))
        return [t for d, _ in results for t in d], [t for _, g in results for t in g]

    await pairs(30)  # warm up: connections, snapshot, tokenizer, graph
    direct_c1, gateway_c1 = await pairs(CALLS_C1)
    direct_c10, gateway_c10 = await concurrently(10)
    # The same load with every call waiting for its usage row (AI_USAGE_WRITE=inline).
    settings.AI_USAGE_WRITE = "inline"
    direct_inline, gateway_inline = await concurrently(10)
    settings.AI_USAGE_WRITE = "behind"
    gateway_calls = 30 + CALLS_C1 + 2 * 10 * CALLS_C10

    await gateway(use_cache=True, feature="answer")  # fills the exact and semantic caches
    exact = [await gateway(use_cache=True, feature="answer") for _ in range(200)]
    variants = [
        [{"role": "user", "content": f"{word} is the refund policy for annual plans?"}]
        # Other wordings than the cached question: exact misses, semantic hits.
        for word in ("what", "WHAT", "so what", "and what", "tell me what")
    ]
    semantic = [
        await gateway(variants[i % len(variants)], use_cache=True, feature="answer")
        for i in range(100)
    ]

    def ms(samples: list[float], pct: float) -> float:
        return percentile(samples, pct) * 1000

    written = await sync_to_async(_rows_written)(tenant)

    return {
        "direct_c1_p50_ms": ms(direct_c1, 50),
        "gateway_c1_p50_ms": ms(gateway_c1, 50),
        "overhead_c1_p50_ms": ms(gateway_c1, 50) - ms(direct_c1, 50),
        "overhead_c1_p99_ms": ms(gateway_c1, 99) - ms(direct_c1, 99),
        "direct_c10_p50_ms": ms(direct_c10, 50),
        "gateway_c10_p50_ms": ms(gateway_c10, 50),
        "overhead_c10_p50_ms": ms(gateway_c10, 50) - ms(direct_c10, 50),
        "overhead_c10_inline_write_p50_ms": ms(gateway_inline, 50) - ms(direct_inline, 50),
        # Behind-the-answer writes must still land: one row per gateway call.
        "usage_rows_per_call_ratio": written / (gateway_calls + 1 + len(exact) + len(semantic)),
        "exact_cache_hit_p50_ms": ms(exact, 50),
        "semantic_cache_hit_p50_ms": ms(semantic, 50),
    }


def _rows_written(tenant) -> int:
    from ai.gateway.ledger_writer import usage_flush
    from billing.models import UsageRecord

    usage_flush()
    return UsageRecord.objects.filter(tenant=tenant).count()


def run() -> dict:
    use_scratch_database("atrium_bench_gateway")
    use_scratch_redis()
    port = _free_port()
    simulator = _start_simulator(port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        tenant = _setup(base_url)
        metrics = asyncio.run(_measure(tenant, base_url))
    finally:
        simulator.terminate()
        simulator.wait(10)
    goals = {
        "overhead_c1_p50_ms": goal(metrics["overhead_c1_p50_ms"], "<=", 1.0),
        "overhead_c1_p99_ms": goal(metrics["overhead_c1_p99_ms"], "<=", 3.0),
        "overhead_c10_p50_ms": goal(metrics["overhead_c10_p50_ms"], "<=", 5.0),
        "usage_rows_per_call_ratio": goal(metrics["usage_rows_per_call_ratio"], ">=", 1.0),
        "exact_cache_hit_p50_ms": goal(metrics["exact_cache_hit_p50_ms"], "<=", 2.0),
        "semantic_cache_hit_p50_ms": goal(metrics["semantic_cache_hit_p50_ms"], "<=", 15.0),
    }
    write_result(NAME, metrics, goals)
    return metrics
