"""An in-process snapshot of the AI catalog, so a model call reads no catalog rows.

Edits to the catalog bump a version number in Redis (ai.catalog.receivers); each process looks
at that number at most once per CHECK_INTERVAL and reloads when it moved. So a kill switch or a
prompt rollback takes effect everywhere within about a second, without a deploy."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from ai.catalog.models import (
    AIModel,
    FeatureFlag,
    ModelPrice,
    PromptTemplate,
    PromptVersion,
    Route,
    TenantAIPolicy,
)
from saas.lib.redis import async_client, sync_client

VERSION_KEY = "atrium:ai:config-version"
CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class ModelSpec:
    key: str
    provider: str
    provider_model: str
    kind: str
    context_window: int
    max_output_tokens: int
    dimensions: int | None
    tier: str


@dataclass(frozen=True)
class Price:
    id: int
    effective_from: datetime
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float


@dataclass(frozen=True)
class PromptChoice:
    key: str
    active: PromptVersion | None
    candidate: PromptVersion | None
    candidate_percent: int


@dataclass(frozen=True)
class Policy:
    allowed_models: tuple[str, ...] = ()
    cache_enabled: bool = True
    semantic_cache_enabled: bool = True


_generations = iter(range(1, 1 << 62))


@dataclass
class Snapshot:
    version: int
    # Process-local and never reused (unlike `version`, which restarts if Redis is emptied):
    # caches derived from a snapshot key on it.
    generation: int = field(default_factory=lambda: next(_generations))
    models: dict[str, ModelSpec] = field(default_factory=dict)
    prices: dict[str, list[Price]] = field(default_factory=dict)  # newest first
    routes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    flags: list[tuple[str, int | None, bool, str]] = field(default_factory=list)
    prompts: dict[str, PromptChoice] = field(default_factory=dict)
    policies: dict[int, Policy] = field(default_factory=dict)

    def price_at(self, model_key: str, when: datetime) -> Price | None:
        for price in self.prices.get(model_key, []):
            if price.effective_from <= when:
                return price
        return None

    def policy(self, tenant_id: int) -> Policy:
        return self.policies.get(tenant_id, Policy())


def _load(version: int) -> Snapshot:
    snapshot = Snapshot(version=version)
    for m in AIModel.objects.filter(active=True):
        snapshot.models[m.key] = ModelSpec(
            m.key, m.provider, m.provider_model, m.kind, m.context_window, m.max_output_tokens,
            m.dimensions, m.tier,
        )  # fmt: skip
    for p in ModelPrice.objects.select_related("model").order_by("-effective_from"):
        snapshot.prices.setdefault(p.model.key, []).append(
            Price(p.pk, p.effective_from, float(p.input_per_mtok), float(p.output_per_mtok),
                  float(p.cached_input_per_mtok))
        )  # fmt: skip
    for r in Route.objects.all():
        snapshot.routes[(r.feature, r.tier)] = list(r.models)
    snapshot.flags = [
        (f.feature, f.tenant_id, f.enabled, f.reason) for f in FeatureFlag.objects.all()
    ]
    versions = {v.pk: v for v in PromptVersion.objects.select_related("template")}
    for t in PromptTemplate.objects.all():
        snapshot.prompts[t.key] = PromptChoice(
            t.key,
            versions.get(t.active_version_id),
            versions.get(t.candidate_version_id),
            t.candidate_percent,
        )
    for policy in TenantAIPolicy.objects.all():
        snapshot.policies[policy.tenant_id] = Policy(
            tuple(policy.allowed_models or ()), policy.cache_enabled,
            policy.semantic_cache_enabled,
        )  # fmt: skip
    return snapshot


class _Holder:
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.checked_at = 0.0
        self.lock = threading.Lock()


_holder = _Holder()


def _remote_version() -> int:
    return int(sync_client().get(VERSION_KEY) or 0)


def config_snapshot() -> Snapshot:
    """The current snapshot (sync: may query Redis and the database)."""
    with _holder.lock:
        now = time.monotonic()
        if _holder.snapshot is not None and now - _holder.checked_at < CHECK_INTERVAL:
            return _holder.snapshot
        version = _remote_version()
        if _holder.snapshot is None or _holder.snapshot.version != version:
            from django_tenants.utils import schema_context

            with schema_context(settings.PUBLIC_SCHEMA_NAME):
                _holder.snapshot = _load(version)
        _holder.checked_at = now
        return _holder.snapshot


def fresh_snapshot(max_age_s: float | None = None) -> Snapshot | None:
    """The snapshot if it was checked within `max_age_s` (CHECK_INTERVAL): no check needed."""
    max_age_s = CHECK_INTERVAL if max_age_s is None else max_age_s
    if _holder.snapshot is not None and time.monotonic() - _holder.checked_at < max_age_s:
        return _holder.snapshot
    return None


async def remote_version_async() -> int:
    return int(await async_client().get(VERSION_KEY) or 0)


def snapshot_of_version(version: int) -> Snapshot | None:
    """The snapshot, counted as checked now, if it is of `version` (which the caller read)."""
    snapshot = _holder.snapshot
    if snapshot is None or snapshot.version != version:
        return None
    _holder.checked_at = time.monotonic()
    return snapshot


def config_invalidate() -> None:
    """Make every process reload its snapshot (this one at once, the others within a second)."""
    sync_client().incr(VERSION_KEY)
    with _holder.lock:
        _holder.snapshot = None
        _holder.checked_at = 0.0


def now() -> datetime:
    return timezone.now()
