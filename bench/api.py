"""The REST API under load: `POST /api/v1/chat/completions` through the full HTTP stack (daphne,
Django, DRF, key auth, rate and token limits, idempotency-free path, gateway, usage ledger)
against the provider simulator, with the layers split out in the same run.

Three paths call the same simulator (its own process) with the same question, interleaved so
drift affects them alike: the official openai SDK straight to the simulator (the provider's own
time), the gateway in this process (`complete`), and the SDK pointed at Atrium's API served by
one daphne process (the production server). Gateway overhead = gateway - direct; HTTP stack
overhead = API - gateway. Then requests/s at concurrency 1 and 10, and exact-cache hits (the
same request again; the bench server gives the chat feature a cache TTL, which it has not by
default). Every API call must succeed and leave one usage row."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from asgiref.sync import sync_to_async

from bench.common import goal, percentile, use_scratch_database, use_scratch_redis, write_result
from bench.gateway import _free_port, _start_simulator

NAME = "api"
CALLS_C1 = int(os.environ.get("BENCH_API_CALLS", "200"))
CALLS_C10 = int(os.environ.get("BENCH_API_CALLS_C10", "40"))  # per client
ROOT = Path(__file__).resolve().parent.parent
UNLIMITED = str(10**9)


def _limits_off() -> dict[str, str]:
    names = ("KEY_PER_MINUTE", "TENANT_PER_MINUTE", "KEY_TOKENS_PER_MINUTE",
             "TENANT_TOKENS_PER_MINUTE")  # fmt: skip
    return {f"API_{tier}_{name}": UNLIMITED for tier in ("FREE", "STANDARD", "PREMIUM")
            for name in names}  # fmt: skip


def _start_daphne(port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
         "saas.asgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import httpx2

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx2.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("daphne did not start")


def _setup(simulator_url: str):
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from tenants.services.accounts import user_ensure
    from tenants.services.api_keys import api_key_create
    from tenants.services.provisioning import tenant_provision

    settings.OPENAI_API_KEY = "sk-bench-000000000000"
    settings.OPENAI_BASE_URL = f"{simulator_url}/v1"
    call_command("migrate_schemas", verbosity=0)
    owner = user_ensure(email="bench@example.test", password="bench-Password-123")
    tenant = tenant_provision(slug="bench", name="Bench", owner=owner)
    _, raw_key = api_key_create(tenant=tenant, name="bench", scopes=["chat"])
    return tenant, raw_key


async def _measure(tenant, raw_key: str, simulator_url: str, api_url: str) -> dict[str, float]:
    import openai

    from ai.gateway import Caller, complete

    direct_client = openai.AsyncOpenAI(
        api_key="sk-bench-000000000000", base_url=f"{simulator_url}/v1", max_retries=0
    )
    api_client = openai.AsyncOpenAI(api_key=raw_key, base_url=f"{api_url}/api/v1", max_retries=0)

    def question() -> list[dict[str, str]]:  # a new one each time: no cache hit
        return [{"role": "user", "content": f"What is the refund policy? ({uuid.uuid4().hex})"}]

    async def direct() -> float:
        started = time.perf_counter()
        await direct_client.chat.completions.create(model="gpt-4o-mini", messages=question())
        return time.perf_counter() - started

    async def gateway() -> float:
        started = time.perf_counter()
        await complete(
            caller=Caller(tenant, "chat", uuid.uuid4().hex), messages=question(),
            model="gpt-4o-mini", use_cache=False,
        )  # fmt: skip
        return time.perf_counter() - started

    async def api(messages: list[dict[str, str]] | None = None) -> float:
        started = time.perf_counter()
        await api_client.chat.completions.create(
            model="gpt-4o-mini", messages=messages or question()
        )
        return time.perf_counter() - started

    async def rounds(count: int) -> tuple[list[float], list[float], list[float]]:
        times: tuple[list[float], list[float], list[float]] = ([], [], [])
        for _ in range(count):
            for samples, path in zip(times, (direct, gateway, api), strict=True):
                samples.append(await path())
        return times

    async def api_load(clients: int, per_client: int) -> tuple[list[float], float]:
        async def client() -> list[float]:
            return [await api() for _ in range(per_client)]

        started = time.perf_counter()
        results = await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        return [t for samples in results for t in samples], clients * per_client / elapsed

    await rounds(20)  # warm up: connections, catalog snapshot, tokenizer
    direct_c1, gateway_c1, api_c1 = await rounds(CALLS_C1)
    _, rps_c1 = await api_load(1, CALLS_C1)
    api_c10, rps_c10 = await api_load(10, CALLS_C10)
    cached = [{"role": "user", "content": "What is the refund policy for annual plans?"}]
    await api(cached)  # fills the exact cache
    started = time.perf_counter()
    hits = [await api(cached) for _ in range(200)]
    rps_hits = len(hits) / (time.perf_counter() - started)
    api_calls = 20 + 2 * CALLS_C1 + 10 * CALLS_C10 + 1 + len(hits)
    written = await sync_to_async(_api_rows)(tenant)

    def ms(samples: list[float], pct: float) -> float:
        return percentile(samples, pct) * 1000

    return {
        "direct_c1_p50_ms": ms(direct_c1, 50),
        "gateway_c1_p50_ms": ms(gateway_c1, 50),
        "api_c1_p50_ms": ms(api_c1, 50),
        "api_c1_p99_ms": ms(api_c1, 99),
        "gateway_overhead_c1_p50_ms": ms(gateway_c1, 50) - ms(direct_c1, 50),
        "http_stack_overhead_c1_p50_ms": ms(api_c1, 50) - ms(gateway_c1, 50),
        "http_stack_overhead_c1_p99_ms": ms(api_c1, 99) - ms(gateway_c1, 99),
        "api_c1_requests_per_s": rps_c1,
        "api_c10_p50_ms": ms(api_c10, 50),
        "api_c10_p99_ms": ms(api_c10, 99),
        "api_c10_requests_per_s": rps_c10,
        "api_exact_cache_hit_p50_ms": ms(hits, 50),
        "api_exact_cache_hit_requests_per_s": rps_hits,
        "usage_rows_per_api_call_ratio": written / api_calls,
    }


def _api_rows(tenant) -> int:
    """Usage rows of API calls (written by the server's ledger thread; it flushes at once)."""
    from billing.models import UsageRecord

    deadline = time.monotonic() + 10
    rows = 0
    while time.monotonic() < deadline:
        rows = UsageRecord.objects.filter(tenant=tenant, api_key_id__isnull=False).count()
        time.sleep(0.5)
        if rows == UsageRecord.objects.filter(tenant=tenant, api_key_id__isnull=False).count():
            break
    return rows


def run() -> dict:
    use_scratch_database("atrium_bench_api")
    use_scratch_redis(14)
    os.environ.update(_limits_off())
    simulator_port, api_port = _free_port(), _free_port()
    simulator = _start_simulator(simulator_port)
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    daphne = None
    try:
        tenant, raw_key = _setup(simulator_url)
        env = {
            **os.environ, "OPENAI_API_KEY": "sk-bench-000000000000",
            "OPENAI_BASE_URL": f"{simulator_url}/v1", "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "bench.api_settings",
        }  # fmt: skip
        daphne = _start_daphne(api_port, env)
        metrics = asyncio.run(
            _measure(tenant, raw_key, simulator_url, f"http://localhost:{api_port}")
        )
    finally:
        for process in (daphne, simulator):
            if process is not None:
                process.terminate()
                process.wait(10)
    goals = {
        "usage_rows_per_api_call_ratio": goal(metrics["usage_rows_per_api_call_ratio"], ">=", 1.0)
    }
    write_result(NAME, metrics, goals)
    return metrics
