"""OpenAI and OpenAI-compatible servers (vLLM, Ollama, llama.cpp) through the official SDK."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2  # the HTTP client the openai SDK is built on
import openai

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
    lambda credentials: openai.AsyncOpenAI(
        api_key=credentials.api_key,
        base_url=credentials.base_url or None,
        max_retries=0,  # the gateway owns retries
        http_client=openai.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
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


BATCH_ENDPOINT = "/v1/chat/completions"
BATCH_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
# Error codes of batch lines the provider never processed.
NOT_PROCESSED = {"batch_expired": "expired", "batch_cancelled": "cancelled"}
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")


def _usage(usage: object | None) -> Usage | None:
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", 0) or 0
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0, cached)


def _batch(batch: Any) -> ProviderBatch:
    error = ""
    if batch.status == "failed":
        errors = batch.errors.data if batch.errors and batch.errors.data else []
        codes = [e.code for e in errors if e.code and _ERROR_CODE.match(e.code)]
        error = "The provider rejected the batch" + (f" ({codes[0]})." if codes else ".")
    return ProviderBatch(batch.id, batch.status, batch.status in BATCH_ENDED, error)


def _batch_body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": _messages(request),
        "max_tokens": request.max_tokens,
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


def _line_result(line: dict[str, Any]) -> BatchLineResult:
    """One line of a batch's output or error file."""
    custom_id = str(line.get("custom_id"))
    response = line.get("response") or {}
    body = response.get("body") or {}
    if response.get("status_code") == 200 and body.get("choices"):
        choice = body["choices"][0]
        usage = body.get("usage")
        counted = None
        if usage:
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            counted = Usage(
                usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, cached
            )
        text = (choice.get("message") or {}).get("content") or ""
        return BatchLineResult(
            custom_id, "succeeded", text, counted, choice.get("finish_reason") or "stop"
        )
    code = str((line.get("error") or {}).get("code") or "")
    if code in NOT_PROCESSED:
        return BatchLineResult(custom_id, NOT_PROCESSED[code])
    status = response.get("status_code")
    code = code or str(
        ((body.get("error") or {}) if isinstance(body, dict) else {}).get("type") or ""
    )
    detail = ", ".join(
        part
        for part in (str(status) if status else "", code if _ERROR_CODE.match(code) else "")
        if part
    )
    message = "The provider refused this request" + (f" ({detail})." if detail else ".")
    return BatchLineResult(custom_id, "errored", error=message)


class OpenAIAdapter:
    name = "openai"
    batches = True  # the Batch API: a JSONL file of requests, results within 24 h

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

    async def batch_create(
        self, lines: list[BatchLine], credentials: Credentials, *, timeout: float
    ) -> ProviderBatch:
        jsonl = "\n".join(
            json.dumps(
                {"custom_id": line.custom_id, "method": "POST", "url": BATCH_ENDPOINT,
                 "body": _batch_body(line.request)}
            )
            for line in lines
        )  # fmt: skip
        client = _client(credentials)
        try:
            upload = await client.files.create(
                file=("atrium-batch.jsonl", jsonl.encode(), "application/jsonl"),
                purpose="batch",
                timeout=timeout,
            )
            batch = await client.batches.create(
                input_file_id=upload.id, endpoint=BATCH_ENDPOINT, completion_window="24h",
                timeout=timeout,
            )  # fmt: skip
        except Exception as error:
            raise map_error(error) from None
        return _batch(batch)

    async def batch_retrieve(
        self, batch_id: str, credentials: Credentials, *, timeout: float
    ) -> ProviderBatch:
        try:
            batch = await _client(credentials).batches.retrieve(batch_id, timeout=timeout)
        except Exception as error:
            raise map_error(error) from None
        return _batch(batch)

    async def batch_results(
        self, batch: ProviderBatch, credentials: Credentials, *, timeout: float
    ) -> list[BatchLineResult]:
        client = _client(credentials)
        results: list[BatchLineResult] = []
        try:
            current = await client.batches.retrieve(batch.id, timeout=timeout)
            for file_id in (current.output_file_id, current.error_file_id):
                if not file_id:
                    continue
                content = await client.files.content(file_id, timeout=timeout)
                for raw in content.text.splitlines():
                    if raw.strip():
                        results.append(_line_result(json.loads(raw)))
        except Exception as error:
            raise map_error(error) from None
        return results

    async def batch_cancel(
        self, batch_id: str, credentials: Credentials, *, timeout: float
    ) -> ProviderBatch:
        try:
            batch = await _client(credentials).batches.cancel(batch_id, timeout=timeout)
        except Exception as error:
            raise map_error(error) from None
        return _batch(batch)


class OpenAICompatibleAdapter(OpenAIAdapter):
    """Same wire format; the server and its key come from settings or the tenant's BYOK key."""

    name = "openai_compatible"
    batches = False  # self-hosted servers (vLLM, Ollama, llama.cpp) have no Batch API
