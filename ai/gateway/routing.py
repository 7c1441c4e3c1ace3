"""Which models, in which order, with which credentials, serve a call."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.conf import settings
from django_tenants.utils import tenant_context

from ai.gateway.config import ModelSpec, Snapshot
from ai.gateway.errors import GatewayError, ModelNotAllowed
from ai.providers.base import Credentials
from tenants.models import Tenant

LOCAL_MODELS = {"chat": "local-extractive", "embedding": "local-minilm"}
_TIER_RANK = {"free": 0, "standard": 1, "premium": 2}


@dataclass(frozen=True)
class Target:
    model: ModelSpec
    credentials: Credentials
    tenant_schema: str

    @property
    def breaker_key(self) -> str:
        # A tenant's own key fails on its own: its breaker is never shared with other tenants.
        scope = f"tenant:{self.tenant_schema}" if self.credentials.byok else "platform"
        return f"{scope}:{self.model.provider}:{self.model.key}"


def tier_of(tenant: Tenant) -> str:
    return settings.AI_PLAN_TIERS.get(tenant.plan_code, "free")


def platform_credentials(provider: str) -> Credentials | None:
    if provider == "local":
        return Credentials(api_key="local")
    key = {
        "openai": settings.OPENAI_API_KEY,
        "anthropic": settings.ANTHROPIC_API_KEY,
        # Self-hosted servers often need no key; the SDK still wants a value.
        "openai_compatible": settings.OPENAI_COMPATIBLE_API_KEY or "none",
    }.get(provider, "")
    base_url = default_base_url(provider)
    if not key or (provider == "openai_compatible" and not base_url):
        return None
    return Credentials(key, base_url)


def default_base_url(provider: str) -> str:
    """Where a provider is reached unless a key names its own server (empty: the SDK default)."""
    return {
        "openai": settings.OPENAI_BASE_URL,
        "anthropic": settings.ANTHROPIC_BASE_URL,
        "openai_compatible": settings.OPENAI_COMPATIBLE_BASE_URL,
    }.get(provider, "")


# Decrypted BYOK credentials per (tenant schema, snapshot generation). Key edits invalidate the
# config (ai.services), so a replaced or removed key is not used after the next config check.
_byok_cache: dict[tuple[str, int], dict[str, Credentials]] = {}
_byok_lock = threading.Lock()


def cached_tenant_credentials(tenant: Tenant, generation: int) -> dict[str, Credentials] | None:
    """The tenant's keys if already loaded for this snapshot generation (no I/O)."""
    with _byok_lock:
        return _byok_cache.get((tenant.schema_name, generation))


def tenant_credentials(tenant: Tenant, generation: int) -> dict[str, Credentials]:
    """The tenant's own provider keys (sync: reads the tenant's schema)."""
    cache_key = (tenant.schema_name, generation)
    cached = cached_tenant_credentials(tenant, generation)
    if cached is not None:
        return cached
    from ai.models import ProviderKey
    from ai.secrets import secret_decrypt

    keys: dict[str, Credentials] = {}
    with tenant_context(tenant):
        for key in ProviderKey.objects.all():
            try:
                secret = secret_decrypt(key.encrypted_key)
            except ValueError:
                # Never fall back to the platform's key silently: that would bill the platform.
                raise GatewayError(
                    f"The stored {key.get_provider_display()} key cannot be read (encryption keys "
                    "changed). An administrator should enter it again in AI settings."
                ) from None
            base_url = key.base_url or default_base_url(key.provider)
            keys[key.provider] = Credentials(secret, base_url, byok=True)
    with _byok_lock:
        if len(_byok_cache) > 1000:
            _byok_cache.clear()
        _byok_cache[cache_key] = keys
    return keys


def route_targets(
    *,
    snapshot: Snapshot,
    tenant: Tenant,
    feature: str,
    kind: str,
    byok: dict[str, Credentials],
    requested_model: str | None = None,
) -> list[Target]:
    """Primary first, then fallbacks: the route for the tenant's tier (a requested model goes
    first), limited to models the tenant may use and that have credentials. With no provider
    configured at all, the local model for the kind."""
    tier = tier_of(tenant)
    policy = snapshot.policy(tenant.pk)
    keys = list(snapshot.routes.get((feature, tier)) or snapshot.routes.get((feature, "free"), []))
    if requested_model:
        model = snapshot.models.get(requested_model)
        allowed = not policy.allowed_models or requested_model in policy.allowed_models
        if model is None or model.kind != kind or not allowed or not _tier_allows(model, tier):
            raise ModelNotAllowed(f"The model '{requested_model}' is not available to you.")
        keys = [requested_model] + [k for k in keys if k != requested_model]
    targets: list[Target] = []
    for key in keys:
        model = snapshot.models.get(key)
        if model is None or model.kind != kind:
            continue
        if policy.allowed_models and key not in policy.allowed_models:
            continue
        credentials = byok.get(model.provider) or platform_credentials(model.provider)
        if credentials is not None:
            targets.append(Target(model, credentials, tenant.schema_name))
    if not targets:
        local = snapshot.models.get(LOCAL_MODELS[kind])
        if local is not None and (not policy.allowed_models or local.key in policy.allowed_models):
            targets.append(Target(local, Credentials(api_key="local"), tenant.schema_name))
    if not targets:
        raise ModelNotAllowed("No model is available for this request. Ask an administrator.")
    return targets


def usable_models(
    *, snapshot: Snapshot, tenant: Tenant, kind: str, byok: dict[str, Credentials]
) -> list[ModelSpec]:
    """The models of `kind` the tenant may ask for by name now: allowed by its plan tier and
    policy, with credentials (its own or the platform's). Catalog order."""
    tier = tier_of(tenant)
    policy = snapshot.policy(tenant.pk)
    return [
        model
        for key, model in snapshot.models.items()
        if model.kind == kind
        and (not policy.allowed_models or key in policy.allowed_models)
        and _tier_allows(model, tier)
        and (byok.get(model.provider) or platform_credentials(model.provider)) is not None
    ]


def _tier_allows(model: ModelSpec, tier: str) -> bool:
    return _TIER_RANK.get(model.tier, 1) <= _TIER_RANK.get(tier, 0)
