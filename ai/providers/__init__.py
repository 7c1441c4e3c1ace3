"""Provider adapters, one module per SDK. Only the gateway imports this package."""

from __future__ import annotations

from ai.providers.anthropic import AnthropicAdapter
from ai.providers.base import ProviderAdapter
from ai.providers.local import LocalAdapter
from ai.providers.openai import OpenAIAdapter, OpenAICompatibleAdapter

ADAPTERS: dict[str, ProviderAdapter] = {
    adapter.name: adapter
    for adapter in (OpenAIAdapter(), OpenAICompatibleAdapter(), AnthropicAdapter(), LocalAdapter())
}
