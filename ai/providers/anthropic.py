"""Anthropic through the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2  # the HTTP client anthropic's SDK is built on

from ai.providers.base import (
    BatchLine,
    BatchLineResult,
    ChatRequest,
    ChatResponse,
    ClientCache,
    Credentials,
    EmbedResponse,
    ProviderBatch,
    ProviderError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
    broken_stream_error,
    connection_error,
    shared_ssl_context,
    status_error,
    timeout_error,
)

_clients = ClientCache(
    lambda credentials: anthropic.AsyncAnthropic(
        api_key=credentials.api_key,
        base_url=credentials.base_url or None,
        max_retries=0,  # the gateway owns retries
        http_client=anthropic.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
    )
)


def _client(credentials: Credentials) -> anthropic.AsyncAnthropic:
    return _clients.get(credentials)


def map_error(error: Exception) -> ProviderError:
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, anthropic.APITimeoutError):
        return timeout_error()
    if isinstance(error, anthropic.APIConnectionError):
        return connection_error()
    if isinstance(error, anthropic.APIStatusError) and error.status_code < 400:
        # An in-band `event: error` inside a 200 stream (e.g. overloaded mid-answer).
        return broken_stream_error()
    if isinstance(error, anthropic.APIStatusError):
        return status_error(error.status_code, error.response.headers.get("retry-after"))
    # The SDK does not wrap transport or JSON errors raised while iterating a stream.
    if isinstance(error, httpx2.TransportError | anthropic.APIError | ValueError):
        return broken_stream_error()
    raise error


def _kwargs(request: ChatRequest) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "model": request.model,
        "messages": request.messages,
        "max_tokens": request.max_tokens,
        "timeout": request.timeout,
    }
    if request.system:
        kwargs["system"] = request.system
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    return kwargs


# How Message Batches name the outcomes of requests that were never processed.
NOT_PROCESSED = {"canceled": "cancelled", "expired": "expired"}


def _batch(batch: Any) -> ProviderBatch:
    return ProviderBatch(batch.id, batch.processing_status, batch.processing_status == "ended")


def _result(response: Any) -> BatchLineResult:
    result = response.result
    if result.type == "succeeded":
        message = result.message
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = Usage(
            message.usage.input_tokens,
            message.usage.output_tokens,
            getattr(message.usage, "cache_read_input_tokens", 0) or 0,
        )
        return BatchLineResult(
            response.custom_id, "succeeded", text, usage, message.stop_reason or "stop"
        )
    if result.type in NOT_PROCESSED:
        return BatchLineResult(response.custom_id, NOT_PROCESSED[result.type])
    kind = getattr(getattr(result.error, "error", None), "type", "") or "error"
    return BatchLineResult(
        response.custom_id, "errored", error=f"The provider refused this request ({kind})."
    )


class AnthropicAdapter:
    name = "anthropic"
    batches = True  # Message Batches: results within 24 h

    async def complete(self, request: ChatRequest, credentials: Credentials) -> ChatResponse:
        try:
            response = await _client(credentials).messages.create(**_kwargs(request))
        except Exception as error:
            raise map_error(error) from None
        text = "".join(block.text for block in response.content if block.type == "text")
        usage = Usage(
            response.usage.input_tokens,
            response.usage.output_tokens,
            getattr(response.usage, "cache_read_input_tokens", 0) or 0,
        )
        return ChatResponse(text, usage, response.stop_reason or "stop")

    async def stream(
        self, request: ChatRequest, credentials: Credentials
    ) -> AsyncIterator[StreamEvent]:
        input_tokens = output_tokens = cached = 0
        saw_usage = stopped = False
        stop_reason = "stop"
        try:
            events = await _client(credentials).messages.create(**_kwargs(request), stream=True)
            async with events:
                async for event in events:
                    if event.type == "message_start":
                        usage = event.message.usage
                        input_tokens = usage.input_tokens or 0
                        cached = getattr(usage, "cache_read_input_tokens", 0) or 0
                        saw_usage = True
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield TextDelta(event.delta.text)
                    elif event.type == "message_delta":
                        output_tokens = event.usage.output_tokens or 0
                        stop_reason = event.delta.stop_reason or stop_reason
                    elif event.type == "message_stop":
                        stopped = True
        except Exception as error:
            raise map_error(error) from None
        if not stopped:
            raise broken_stream_error()
        usage_out = Usage(input_tokens, output_tokens, cached) if saw_usage else None
        yield StreamEnd(usage_out, stop_reason)

    async def batch_create(
        self, lines: list[BatchLine], credentials: Credentials, *, timeout: float
    ) -> ProviderBatch:
        requests: list[Any] = []
        for line in lines:
            params = _kwargs(line.request)
            params.pop("timeout")
            requests.append({"custom_id": line.custom_id, "params": params})
        try:
            batch = await _client(credentials).messages.batches.create(
                requests=requests, timeout=timeout
            )
        except Exception as error:
            raise map_error(error) from None
        return _batch(batch)

    async def batch_retrieve(
        self, batch_id: str, credentials: Credentials, *, timeout: float
    ) -> ProviderBatch:
        try:
            batch = await _client(credentials).messages.batches.retrieve(batch_id, timeout=timeout)
        except Exception as error:
            raise map_error(error) from None
        return _batch(batch)

    async def batch_results(
        self, batch: ProviderBatch, credentials: Credentials, *, timeout: float
    ) -> list[BatchLineResult]:
        results: list[BatchLineResult] = []
        try:
            lines = await _client(credentials).messages.batches.results(batch.id, timeout=timeout)
            try:
                async for response in lines:
                    results.append(_result(response))
            finally:
                await lines.close()
        except Exception as error:
            raise map_error(error) from None
        return results

    async def batch_cancel(
        self, batch_id: str, credentials: Credentials, *, timeout: float
    ) -> ProviderBatch:
        try:
            batch = await _client(credentials).messages.batches.cancel(batch_id, timeout=timeout)
        except Exception as error:
            raise map_error(error) from None
        return _batch(batch)

    async def embed(
        self,
        model: str,
        texts: list[str],
        credentials: Credentials,
        *,
        timeout: float,
        dimensions: int | None = None,
    ) -> EmbedResponse:
        raise ProviderError("bad_request", "Anthropic has no embeddings API.", retriable=False)
