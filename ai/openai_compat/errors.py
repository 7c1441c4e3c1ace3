"""Errors of the OpenAI-compatible endpoints: one body that both kinds of client read.

Every error is the RFC 9457 problem the rest of /api/v1/ answers (`application/problem+json`:
type, title, status, detail, per-field `errors`) with OpenAI's error object added as `error`:

    {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "...",
     "error": {"message": "...", "type": "invalid_request_error", "param": "model",
               "code": "model_not_found"}}

The OpenAI SDKs parse any JSON error body and read its `error` member (message, type, param,
code); they pick their exception class from the HTTP status, which is the same for both."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rest_framework import exceptions, serializers
from rest_framework.response import Response

from ai.gateway import (
    AIDisabled,
    AllProvidersFailed,
    GatewayError,
    InputRejected,
    ModelNotAllowed,
    ProviderRejectedRequest,
)
from saas.api.errors import PROBLEM, problem_exception_handler
from saas.api.schema import ProblemSerializer

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"
_TYPES = {403: "permission_error", 429: "rate_limit_error"}
_CODES = {
    401: "invalid_api_key",
    403: "insufficient_scope",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
}


def error_type(status: int) -> str:
    if status >= 500:
        return SERVER_ERROR
    return _TYPES.get(status, INVALID_REQUEST)


def openai_error(
    message: str, *, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object (also the payload of a stream's `data: {"error": ...}` event)."""
    return {
        "message": message,
        "type": error_type(status),
        "param": param,
        "code": code or _CODES.get(status),
    }


class OpenAIAPIError(exceptions.APIException):
    """An error with OpenAI's `code` and `param` (and Retry-After when `wait` is set)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        wait: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status
        self.code = code
        self.param = param
        if wait:
            self.wait = max(1, round(wait))  # DRF sends it as Retry-After


def gateway_error(error: GatewayError) -> OpenAIAPIError:
    """The HTTP answer for a gateway refusal or failure: the client's fault is a 4xx."""
    if isinstance(error, ModelNotAllowed):
        return OpenAIAPIError(404, error.message, code="model_not_found", param="model")
    if isinstance(error, InputRejected):
        return OpenAIAPIError(400, error.message, code="input_rejected", param="messages")
    if isinstance(error, ProviderRejectedRequest):
        return OpenAIAPIError(400, error.message, code=error.code)
    if isinstance(error, AIDisabled):
        return OpenAIAPIError(503, error.message, code="ai_disabled")
    if isinstance(error, AllProvidersFailed):
        return OpenAIAPIError(
            503, error.message, code="providers_unavailable", wait=error.retry_after
        )
    status = error.status if error.status >= 500 else 502
    return OpenAIAPIError(status, error.message, code=error.code)


@contextmanager
def gateway_errors() -> Iterator[None]:
    try:
        yield
    except GatewayError as error:
        raise gateway_error(error) from None


def _param(path: str) -> str | None:
    """`messages.1.role` (problem+json) as OpenAI writes it: `messages[1].role`."""
    parts: list[str] = []
    for part in path.split("."):
        if part == "non_field_errors":
            continue  # an error about the object itself
        if part.isdigit() and parts:
            parts[-1] += f"[{part}]"
        else:
            parts.append(part)
    return ".".join(parts) or None


def _first_error(detail: Any, path: str = "") -> tuple[str, str, str]:
    """(field path, message, DRF code) of the first error in a ValidationError's detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            return _first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list):
        for index, item in enumerate(detail):
            if isinstance(item, dict | list):
                if item:
                    return _first_error(item, f"{path}.{index}" if path else str(index))
            else:
                return _first_error(item, path)
    return path, str(detail), getattr(detail, "code", "invalid")


def _error_for(exc: Exception, status: int, detail: str) -> dict[str, Any]:
    if isinstance(exc, OpenAIAPIError):
        return openai_error(detail, status=status, code=exc.code, param=exc.param)
    if isinstance(exc, exceptions.ValidationError):
        path, message, drf_code = _first_error(exc.detail)
        param = _param(path)
        code = "missing_required_parameter" if drf_code == "required" else "invalid_value"
        return openai_error(
            f"{param}: {message}" if param else message, status=status, code=code, param=param
        )
    if isinstance(exc, exceptions.ParseError):
        return openai_error(detail, status=status, code="invalid_json")
    return openai_error(detail, status=status)


def openai_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The API's problem+json answer, with OpenAI's `error` object added."""
    response = problem_exception_handler(exc, context)
    if response is None:
        return None
    body = response.data
    response.data = {**body, "error": _error_for(exc, body["status"], body["detail"])}
    return response


# --- OpenAPI ---------------------------------------------------------------------------------


class OpenAIErrorSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField(
        help_text="invalid_request_error, permission_error, rate_limit_error or server_error."
    )
    param = serializers.CharField(
        allow_null=True, help_text="The request field at fault, e.g. `messages[1].role`."
    )
    code = serializers.CharField(
        allow_null=True,
        help_text="e.g. invalid_value, missing_required_parameter, invalid_json, "
        "model_not_found, invalid_api_key, insufficient_scope, rate_limit_exceeded, "
        "input_rejected, providers_unavailable.",
    )


class OpenAIProblemSerializer(ProblemSerializer):
    """The errors of the OpenAI-compatible endpoints: an RFC 9457 problem (as everywhere in
    this API) with OpenAI's error object added as `error`, so that problem+json clients and
    OpenAI SDKs (which read `error` from any JSON error body) both understand it. A stream
    that breaks after it has started ends with a `data: {"error": {...}}` event instead."""

    error = OpenAIErrorSerializer(help_text="The same error in OpenAI's shape.")


def _problem(description: str) -> Any:
    from drf_spectacular.utils import OpenApiResponse

    return OpenApiResponse(OpenAIProblemSerializer, description=description)


OPENAI_PROBLEM_RESPONSES = {
    (400, PROBLEM): _problem("Invalid input (per-field `errors`; `error.param` names the field)."),
    (401, PROBLEM): _problem(
        "Missing, malformed, wrong, expired or revoked API key (one answer for all)."
    ),
    (403, PROBLEM): _problem("The key lacks the scope this request needs."),
    (406, PROBLEM): _problem("The Accept header excludes JSON."),
    (429, PROBLEM): _problem(
        "Rate limit reached (per key or per tenant); see the Retry-After header."
    ),
}
OPENAI_LIST_PROBLEM_RESPONSES = {
    **OPENAI_PROBLEM_RESPONSES,
    (502, PROBLEM): _problem("A stored provider key of the tenant cannot be read."),
}
OPENAI_BODY_PROBLEM_RESPONSES = {
    **OPENAI_PROBLEM_RESPONSES,
    (404, PROBLEM): _problem(
        "The model does not exist or this tenant may not use it (`model_not_found`)."
    ),
    (413, PROBLEM): _problem("The request body is too large."),
    (415, PROBLEM): _problem("The body is not JSON."),
    (502, PROBLEM): _problem("The model provider refused or failed the call."),
    (503, PROBLEM): _problem(
        "AI is switched off for this tenant, or no provider is answering (Retry-After)."
    ),
}
# Operations that take an Idempotency-Key.
OPENAI_IDEMPOTENT_RESPONSES = {
    **OPENAI_BODY_PROBLEM_RESPONSES,
    (409, PROBLEM): _problem("A request with this Idempotency-Key is still running."),
    (422, PROBLEM): _problem("This Idempotency-Key was used with a different request."),
}
