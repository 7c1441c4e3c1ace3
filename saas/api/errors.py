"""Every API error as RFC 9457 problem details (`application/problem+json`): type, title,
status, detail, and for invalid input the per-field `errors`."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
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


def field_errors(detail: Any, path: str = "") -> dict[str, list[str]]:
    """DRF's error detail, nested for list items and nested objects (`{"tags": {"3": [...]}}`),
    as one flat mapping of field path to messages (`{"tags.3": [...]}`), as documented."""
    if isinstance(detail, dict):
        items: Any = detail.items()
    elif isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        items = enumerate(detail)
    else:
        messages = detail if isinstance(detail, list) else [detail]
        return {path: [str(message) for message in messages]}
    errors: dict[str, list[str]] = {}
    for key, value in items:
        errors.update(field_errors(value, f"{path}.{key}" if path else str(key)))
    return errors


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Django's refusals while reading the body (too big, too many fields or files) would
    # otherwise become its HTML 400 page, rendered for an API key instead of a user.
    if isinstance(exc, SuspiciousOperation):
        # Logged where Django logs them (django.security.*), as it would have.
        logging.getLogger(f"django.security.{type(exc).__name__}").warning("%s", exc)
        exc = PayloadTooLarge() if isinstance(exc, RequestDataTooBig) else exceptions.ParseError()
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        generic = exceptions.AuthenticationFailed(INVALID_KEY)  # one answer for every problem
        generic.auth_header = getattr(exc, "auth_header", None)  # type: ignore[attr-defined]
        exc = generic
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = field_errors(response.data)
        body = problem(response.status_code, "The request has invalid fields.", errors=errors)
    else:
        detail = response.data.get("detail") if isinstance(response.data, dict) else None
        body = problem(response.status_code, str(detail or HTTPStatus(response.status_code).phrase))
    response.data = body
    response.content_type = PROBLEM
    return response


@csrf_exempt  # an unknown path is a 404 for every method, never a CSRF page
def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Unknown paths under /api/ answer in the same format."""
    return JsonResponse(
        problem(404, "There is no such API endpoint."), status=404, content_type=PROBLEM
    )
