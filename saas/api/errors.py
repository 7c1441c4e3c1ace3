"""Every API error as RFC 9457 problem details (`application/problem+json`): type, title,
status, detail, and for invalid input the per-field `errors`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from saas.api.authentication import INVALID_KEY

PROBLEM = "application/problem+json"


def problem(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        generic = exceptions.AuthenticationFailed(INVALID_KEY)  # one answer for every problem
        generic.auth_header = getattr(exc, "auth_header", None)  # type: ignore[attr-defined]
        exc = generic
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"": response.data}
        body = problem(response.status_code, "The request has invalid fields.", errors=errors)
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        body = problem(response.status_code, str(detail or HTTPStatus(response.status_code).phrase))
    response.data = body
    response.content_type = PROBLEM
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Unknown paths under /api/ answer in the same format."""
    return JsonResponse(
        problem(404, "There is no such API endpoint."), status=404, content_type=PROBLEM
    )
