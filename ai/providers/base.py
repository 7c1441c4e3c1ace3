"""The interface every provider adapter implements, and the provider-neutral data it speaks.

Adapters translate to and from one SDK; they never retry (the gateway does), never record usage
and never read settings about routing. Errors leave an adapter only as `ProviderError`."""

from __future__ import annotations

import functools
import ssl
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Credentials:
    api_key: str
    base_url: str = ""
    byok: bool = False  # the tenant's own key: its failures never touch shared state

    def __repr__(self) -> str:  # never print a key
        return f"Credentials(base_url={self.base_url!r}, byok={self.byok})"


@dataclass(frozen=True)
class ContextDoc:
    """Retrieved text handed to the model as quoted data (never as instructions)."""

    id: str
    text: str
    title: str = ""


@dataclass
class ChatRequest:
    model: str  # the provider's model id
    messages: list[dict[str, str]]  # {"role": "user"|"assistant", "content": ...}
    system: str = ""
    max_tokens: int = 512
    temperature: float | None = None
    context: list[ContextDoc] = field(default_factory=list)
    timeout: float = 30.0


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False


@dataclass
class ChatResponse:
    text: str
    usage: Usage | None
    finish_reason: str = "stop"


@dataclass
class TextDelta:
    text: str


@dataclass
class StreamEnd:
    """The provider said the answer is complete. A stream that stops without one is broken."""

    usage: Usage | None
    finish_reason: str = "stop"


StreamEvent = TextDelta | StreamEnd


@dataclass
class EmbedResponse:
    vectors: list[list[float]]
    usage: Usage | None


@dataclass
class BatchLine:
    """One request of a provider batch: its id in the batch and the chat call it stands for."""

    custom_id: str
    request: ChatRequest


@dataclass
class ProviderBatch:
    """A provider batch as last seen: the provider's own status word, and whether it ended
    (every request succeeded, failed, expired or was cancelled: results can be read)."""

    id: str
    status: str
    ended: bool = False
    error: str = ""  # why the whole batch failed (OpenAI validation), safe to show


@dataclass
class BatchLineResult:
    """The outcome of one request of an ended batch. `kind`: succeeded, errored (`error` says
    why, safe to show), cancelled or expired (never processed)."""

    custom_id: str
    kind: str
    text: str = ""
    usage: Usage | None = None
    finish_reason: str = "stop"
    error: str = ""


class ProviderError(Exception):
    """A provider call failed. `retriable` errors may be retried or failed over; the others
    (bad request, bad key, forbidden) fail fast. `message` is safe to show: no keys, no bodies."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retriable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retriable = retriable
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class ProviderAdapter(Protocol):
    name: str

    async def complete(self, request: ChatRequest, credentials: Credentials) -> ChatResponse: ...

    def stream(self, request: ChatRequest, credentials: Credentials) -> AsyncIterator[StreamEvent]:
        """Yields TextDelta events, then exactly one StreamEnd if the answer completed.
        Raises ProviderError when the stream fails (before or after the first delta)."""
        ...

    async def embed(
        self,
        model: str,
        texts: list[str],
        credentials: Credentials,
        *,
        timeout: float,
        dimensions: int | None = None,
    ) -> EmbedResponse:
        """`dimensions`: ask for vectors of that size (models that can shorten theirs);
        a model that cannot give them raises a non-retriable ProviderError."""
        ...


class BatchAdapter(Protocol):
    """Adapters whose provider has a batch API (`batches = True`) also implement these. One
    batch has requests for one model; results come back by `custom_id`, in any order."""

    batches: bool

    async def batch_create(
        self, lines: list[BatchLine], credentials: Credentials, *, timeout: float
    ) -> ProviderBatch: ...

    async def batch_retrieve(
        self, batch_id: str, credentials: Credentials, *, timeout: float
    ) -> ProviderBatch: ...

    async def batch_results(
        self, batch: ProviderBatch, credentials: Credentials, *, timeout: float
    ) -> list[BatchLineResult]:
        """Every result the provider has for an ended batch (lines it has none for are left out)."""
        ...

    async def batch_cancel(
        self, batch_id: str, credentials: Credentials, *, timeout: float
    ) -> ProviderBatch: ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare from APIs)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def timeout_error() -> ProviderError:
    return ProviderError("timeout", "The provider did not answer in time.", retriable=True)


def connection_error() -> ProviderError:
    return ProviderError("connection", "Could not reach the provider.", retriable=True)


def broken_stream_error() -> ProviderError:
    return ProviderError("stream_broken", "The provider's answer broke off.", retriable=True)


def status_error(status: int, retry_after_header: str | None) -> ProviderError:
    """The one classification of HTTP error statuses: 429 and 5xx (529 overloaded included) are
    retriable and carry Retry-After; everything else is the caller's fault and fails fast."""
    retry_after = parse_retry_after(retry_after_header)
    if status == 429:
        return ProviderError(
            "rate_limit", "The provider is rate limiting.", retriable=True, status=status,
            retry_after=retry_after,
        )  # fmt: skip
    if status >= 500:
        kind = "overloaded" if status == 529 else "server"
        return ProviderError(
            kind, f"The provider failed ({status}).", retriable=True, status=status,
            retry_after=retry_after,
        )  # fmt: skip
    kind = {401: "auth", 403: "forbidden"}.get(status, "bad_request")
    return ProviderError(
        kind, f"The provider refused the request ({status}).", retriable=False, status=status
    )


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context (CA bundle loaded once) for every SDK client of the process: the SDKs
    would load the bundle for each new client, ~35 ms each, and a client is made per event
    loop (each Celery answer task runs on a new one)."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class ClientCache[C]:
    """One SDK client (and so one connection pool) per event loop and credentials: the SDKs'
    HTTP pools belong to the event loop that created them."""

    def __init__(self, factory: Callable[[Credentials], C]) -> None:
        self.factory = factory
        self.clients: weakref.WeakKeyDictionary[AbstractEventLoop, dict[tuple[str, str], C]]
        self.clients = weakref.WeakKeyDictionary()

    def get(self, credentials: Credentials) -> C:
        per_loop = self.clients.setdefault(get_running_loop(), {})
        key = (credentials.base_url, credentials.api_key)
        if key not in per_loop:
            per_loop[key] = self.factory(credentials)
        return per_loop[key]
