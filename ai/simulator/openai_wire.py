"""OpenAI Chat Completions wire format, as the `openai` SDK parses it."""

from __future__ import annotations

from typing import Any

from ai.simulator.wire import Completion, dumps, sse

# Default (type, code, message) per status; a step's "error_type"/"message" override them.
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (simulated)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (simulated)."),
    403: ("invalid_request_error", "permission_denied", "Permission denied (simulated)."),
    404: ("invalid_request_error", "not_found", "Not found (simulated)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (simulated)."),
}
SERVER_ERROR = ("server_error", None, "The server had an error (simulated).")


class OpenAIWire:
    request_id_header = "x-request-id"

    def _usage(self, completion: Completion) -> dict[str, Any]:
        return {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def _finish_reason(self, completion: Completion) -> str:
        return "length" if completion.truncated else "stop"

    def completion_body(self, completion: Completion) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion.id,
            "object": "chat.completion",
            "created": completion.created,
            "model": completion.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": completion.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": self._finish_reason(completion),
                }
            ],
            "service_tier": "default",
            "system_fingerprint": None,
        }
        if completion.with_usage:
            body["usage"] = self._usage(completion)
        return body

    def _chunk(self, completion: Completion, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": completion.id,
            "object": "chat.completion.chunk",
            "created": completion.created,
            "model": completion.model,
            "service_tier": "default",
            "system_fingerprint": None,
            "choices": choices,
        }
        # Like the real API: with include_usage every chunk carries "usage": null until the last.
        if completion.include_usage and completion.with_usage:
            chunk["usage"] = None
        return chunk

    def _delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def stream_start(self, completion: Completion) -> list[bytes]:
        delta = {"role": "assistant", "content": "", "refusal": None}
        return [sse(self._chunk(completion, [self._delta(delta)]))]

    def stream_token(self, completion: Completion, token: str) -> bytes:
        return sse(self._chunk(completion, [self._delta({"content": token})]))

    def stream_end(self, completion: Completion) -> list[bytes]:
        finish = self._delta({}, self._finish_reason(completion))
        events = [sse(self._chunk(completion, [finish]))]
        if completion.include_usage and completion.with_usage:
            events.append(sse({**self._chunk(completion, []), "usage": self._usage(completion)}))
        return [*events, sse(b"[DONE]")]

    def stream_error(self, message: str | None, error_type: str | None) -> bytes:
        error = {
            "message": message or "The server had an error while processing your request.",
            "type": error_type or "server_error",
            "param": None,
            "code": None,
        }
        return sse({"error": error})

    def stream_malformed(self, completion: Completion) -> bytes:
        return sse(b'{"id":' + dumps(completion.id) + b',"choices":[{"delta":{"content":')

    def error_body(
        self, status: int, message: str | None, error_type: str | None, request_id: str
    ) -> dict[str, Any]:
        default_type, code, default_message = ERRORS.get(
            status, SERVER_ERROR if status >= 500 else ("invalid_request_error", None, "Error.")
        )
        error = {
            "message": message or default_message,
            "type": error_type or default_type,
            "param": None,
            "code": code,
        }
        return {"error": error}

    def models_body(self, models: list[str], created: int) -> dict[str, Any]:
        data = [
            {"id": model, "object": "model", "created": created, "owned_by": "simulator"}
            for model in models
        ]
        return {"object": "list", "data": data}

    def embeddings_body(
        self, *, model: str, embeddings: list[list[float] | str], prompt_tokens: int
    ) -> dict[str, Any]:
        data = [
            {"object": "embedding", "index": index, "embedding": embedding}
            for index, embedding in enumerate(embeddings)
        ]
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        return {"object": "list", "data": data, "model": model, "usage": usage}
