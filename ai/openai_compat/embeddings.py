"""Embeddings and the model list in OpenAI's shapes.

Embeddings are pinned to the requested model: vectors from a fallback model would not be
comparable with the client's earlier ones, so an unavailable model is an error, never a
substitute. Input the model cannot take is refused before the call: the built-in local model
reads at most 256 word pieces per text and cannot shorten its vectors (no model lengthens)."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import numpy as np
from rest_framework.exceptions import ValidationError

from ai.gateway import Caller, embed_sync
from ai.gateway.config import ModelSpec, Snapshot, config_snapshot
from ai.gateway.routing import tenant_credentials, usable_models
from retrieval.selectors import SHORTENING_PROVIDERS
from tenants.models import APIKey, Tenant

EMBED_FEATURE = "embed"


def _check_fits(spec: ModelSpec | None, texts: list[str], dimensions: int | None) -> None:
    if spec is None or spec.kind != "embedding":
        return  # the gateway answers: not a model this tenant may use
    native = spec.dimensions
    shortens = spec.provider in SHORTENING_PROVIDERS
    if dimensions and native and dimensions != native and (dimensions > native or not shortens):
        raise ValidationError(
            {"dimensions": [f"{spec.key} gives {native}-dimensional vectors, not {dimensions}."]}
        )
    if spec.provider == "local":
        from ai.embedding.minilm import get_embedder

        embedder = get_embedder()
        counts = embedder.count_tokens_batch(texts)
        over = [index for index, count in enumerate(counts) if count > embedder.max_tokens]
        if over:
            raise ValidationError(
                {f"input.{over[0]}": [f"{spec.key} reads at most {embedder.max_tokens} word "
                                      f"pieces per text; this one has {counts[over[0]]}. "
                                      "Split it."]}
            )  # fmt: skip


def _encode(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


def embeddings_create(*, tenant: Tenant, api_key: APIKey, request: dict[str, Any]) -> dict:
    """The `list` of `embedding` objects for a validated request (raises GatewayError)."""
    texts, model = request["input"], request["model"]
    dimensions = request.get("dimensions")
    _check_fits(config_snapshot().models.get(model), texts, dimensions)
    result = embed_sync(
        caller=Caller(tenant, EMBED_FEATURE, f"embd-{uuid.uuid4().hex}", api_key_id=api_key.pk),
        texts=texts, model=model, dimensions=dimensions, pinned=True,
    )  # fmt: skip
    encoding_format = request.get("encoding_format") or "float"
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _encode(vector, encoding_format)}
            for index, vector in enumerate(result.vectors)
        ],
        "model": result.model,
        "usage": {
            "prompt_tokens": result.usage.input_tokens,
            "total_tokens": result.usage.input_tokens,
        },
    }


def _created(snapshot: Snapshot, key: str) -> int:
    prices = snapshot.prices.get(key)  # newest first
    return int(prices[-1].effective_from.timestamp()) if prices else 0


def models_list(*, tenant: Tenant) -> dict:
    """The chat and embedding models the tenant may name now (plan tier, policy, a provider
    key: its own or the platform's), as OpenAI's `list` of `model` objects."""
    snapshot = config_snapshot()
    byok = tenant_credentials(tenant, snapshot.generation)
    models = [
        model
        for kind in ("chat", "embedding")
        for model in usable_models(snapshot=snapshot, tenant=tenant, kind=kind, byok=byok)
    ]
    return {
        "object": "list",
        "data": [
            {
                "id": model.key,
                "object": "model",
                "created": _created(snapshot, model.key),
                "owned_by": model.provider,
                "atrium": {
                    "kind": model.kind,
                    "context_window": model.context_window,
                    "dimensions": model.dimensions,
                },
            }
            for model in models
        ],
    }
