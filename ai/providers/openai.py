"""OpenAI and OpenAI-compatible servers (vLLM, Ollama, llama.cpp) through the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2  # the HTTP client the openai SDK is built on
import openai

from ai.providers.base import (
    ChatRequest,
    ChatResponse,
    ClientCache,
    Credentials,
    EmbedResponse,
    ProviderError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    broken_stream_error,
    connection_error,
    status_error,
    timeout_error,
)

_clients = ClientCache(
    lambda credentials: openai.AsyncOpenAI(
        api_key=credentials.api_key,
        base_url=credentials.base_url or None,
        max_retries=0,  # the gateway owns retries
    )
)


def _client(credentials: Credentials) -> openai.AsyncOpenAI:
    return _clients.get(credentials)


def map_error(error: Exception) -> ProviderError:
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, openai.APITimeoutError):
        return timeout_error()
    if isinstance(error, openai.APIConnectionError):
        return connection_error()
    if isinstance(error, openai.APIStatusError):
        return status_error(error.status_code, error.response.headers.get("retry-after"))
    # The SDK does not wrap transport or JSON errors raised while iterating a stream.
    if isinstance(error, httpx2.TransportError | openai.APIError | ValueError):
        return broken_stream_error()
    raise error


def _messages(request: ChatRequest) -> list[dict[str, str]]:
    system = [{"role": "system", "content": request.system}] if request.system else []
    return system + request.messages


def _usage(usage: object | None) -> Usage | None:
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", 0) or 0
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, cached)


class OpenAIAdapter:
    name = "openai"

    async def complete(self, request: ChatRequest, credentials: Credentials) -> ChatResponse:
        try:
            response = await _client(credentials).chat.completions.create(
                model=request.model,
                messages=_messages(request),
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                timeout=request.timeout,
            )
        except Exception as error:
            raise map_error(error) from None
        choice = response.choices[0]
        return ChatResponse(
            choice.message.content or "", _usage(response.usage), choice.finish_reason or "stop"
        )

    async def stream(
        self, request: ChatRequest, credentials: Credentials
    ) -> AsyncIterator[StreamEvent]:
        finish_reason = None
        usage = None
        try:
            chunks = await _client(credentials).chat.completions.create(
                model=request.model,
                messages=_messages(request),
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                timeout=request.timeout,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with chunks:
                async for chunk in chunks:
                    if chunk.usage is not None:
                        usage = _usage(chunk.usage)
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            yield TextDelta(choice.delta.content)
                        if choice.finish_reason:
                            finish_reason = choice.finish_reason
        except Exception as error:
            raise map_error(error) from None
        if finish_reason is None:
            raise broken_stream_error()
        yield StreamEnd(usage, finish_reason)

    async def embed(
        self,
        model: str,
        texts: list[str],
        credentials: Credentials,
        *,
        timeout: float,
        dimensions: int | None = None,
    ) -> EmbedResponse:
        extra = {"dimensions": dimensions} if dimensions else {}
        try:
            response = await _client(credentials).embeddings.create(
                model=model, input=texts, timeout=timeout, **extra
            )
        except Exception as error:
            raise map_error(error) from None
        vectors = [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
        usage = Usage(response.usage.prompt_tokens, 0) if response.usage else None
        return EmbedResponse(vectors, usage)


class OpenAICompatibleAdapter(OpenAIAdapter):
    """Same wire format; the server and its key come from settings or the tenant's BYOK key."""

    name = "openai_compatible"
