"""Anthropic Messages wire format, as the `anthropic` SDK parses it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ai.simulator.wire import Completion, sse

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
MESSAGES = {
    "invalid_request_error": "Invalid request (simulated).",
    "authentication_error": "invalid x-api-key (simulated)",
    "permission_error": "Permission denied (simulated).",
    "not_found_error": "Not found (simulated).",
    "request_too_large": "Request exceeds the maximum allowed size (simulated).",
    "rate_limit_error": "Rate limit exceeded (simulated).",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error (simulated).",
}


class AnthropicWire:
    request_id_header = "request-id"

    def _usage(self, completion: Completion, *, output_tokens: int) -> dict[str, Any]:
        # The SDK's stream accumulator reads these fields unconditionally, so "no_usage" zeroes
        # them rather than leaving them out.
        used = completion.with_usage
        return {
            "input_tokens": completion.prompt_tokens if used else 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens if used else 0,
            "service_tier": "standard",
        }

    def _stop_reason(self, completion: Completion) -> str:
        return "max_tokens" if completion.truncated else "end_turn"

    def _message(self, completion: Completion, **fields: Any) -> dict[str, Any]:
        return {
            "id": completion.id,
            "type": "message",
            "role": "assistant",
            "model": completion.model,
            "stop_sequence": None,
            **fields,
        }

    def completion_body(self, completion: Completion) -> dict[str, Any]:
        return self._message(
            completion,
            content=[{"type": "text", "text": completion.text}],
            stop_reason=self._stop_reason(completion),
            usage=self._usage(completion, output_tokens=completion.completion_tokens),
        )

    def stream_start(self, completion: Completion) -> list[bytes]:
        # Like the real API, message_start reports output_tokens=1; message_delta has the total.
        message = self._message(
            completion, content=[], stop_reason=None, usage=self._usage(completion, output_tokens=1)
        )
        block = {"type": "text", "text": ""}
        return [
            sse({"type": "message_start", "message": message}, event="message_start"),
            sse(
                {"type": "content_block_start", "index": 0, "content_block": block},
                event="content_block_start",
            ),
            sse({"type": "ping"}, event="ping"),
        ]

    def stream_token(self, completion: Completion, token: str) -> bytes:
        delta = {"type": "text_delta", "text": token}
        return sse(
            {"type": "content_block_delta", "index": 0, "delta": delta}, event="content_block_delta"
        )

    def stream_end(self, completion: Completion) -> list[bytes]:
        usage = {"output_tokens": completion.completion_tokens if completion.with_usage else 0}
        delta = {"stop_reason": self._stop_reason(completion), "stop_sequence": None}
        return [
            sse({"type": "content_block_stop", "index": 0}, event="content_block_stop"),
            sse({"type": "message_delta", "delta": delta, "usage": usage}, event="message_delta"),
            sse({"type": "message_stop"}, event="message_stop"),
        ]

    def stream_error(self, message: str | None, error_type: str | None) -> bytes:
        kind = error_type or "overloaded_error"
        error = {"type": kind, "message": message or MESSAGES.get(kind, "Error (simulated).")}
        return sse({"type": "error", "error": error}, event="error")

    def stream_malformed(self, completion: Completion) -> bytes:
        return sse(b'{"type":"content_block_delta","index":0,"delta":', event="content_block_delta")

    def error_body(
        self, status: int, message: str | None, error_type: str | None, request_id: str
    ) -> dict[str, Any]:
        kind = (
            error_type
            or ERROR_TYPES.get(status)
            or ("api_error" if status >= 500 else "invalid_request_error")
        )
        error = {"type": kind, "message": message or MESSAGES.get(kind, "Error (simulated).")}
        return {"type": "error", "error": error, "request_id": request_id}

    def models_body(self, models: list[str], created: int) -> dict[str, Any]:
        created_at = datetime.fromtimestamp(created, tz=UTC).isoformat().replace("+00:00", "Z")
        data = [
            {
                "type": "model",
                "id": model,
                "display_name": model,
                "created_at": created_at,
                "lifecycle": "active",
            }
            for model in models
        ]
        first, last = (models[0], models[-1]) if models else (None, None)
        return {"data": data, "has_more": False, "first_id": first, "last_id": last}
