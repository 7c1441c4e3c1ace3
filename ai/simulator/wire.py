"""What the two provider dialects share: the generated completion and the SSE framing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Completion:
    """One generated answer, rendered by a dialect as a JSON body or as a stream."""

    id: str
    model: str
    created: int
    tokens: list[str]
    prompt_tokens: int
    truncated: bool  # stopped by the request's max_tokens
    with_usage: bool  # False under the "no_usage" fault
    include_usage: bool  # OpenAI `stream_options.include_usage`

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def sse(data: Any, *, event: str | None = None) -> bytes:
    line = b"data: " + (data if isinstance(data, bytes) else dumps(data)) + b"\n\n"
    return b"event: " + event.encode() + b"\n" + line if event else line


class Dialect(Protocol):
    """The wire format of one provider, as the handler drives it."""

    request_id_header: str

    def completion_body(self, completion: Completion) -> dict[str, Any]: ...

    def stream_start(self, completion: Completion) -> list[bytes]: ...

    def stream_token(self, completion: Completion, token: str) -> bytes: ...

    def stream_end(self, completion: Completion) -> list[bytes]: ...

    def stream_error(self, message: str | None, error_type: str | None) -> bytes: ...

    def stream_malformed(self, completion: Completion) -> bytes: ...

    def error_body(
        self, status: int, message: str | None, error_type: str | None, request_id: str
    ) -> dict[str, Any]: ...

    def models_body(self, models: list[str], created: int) -> dict[str, Any]: ...
