"""OpenAPI pieces shared by the API views: the problem+json error body and the key scheme."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from saas.api.errors import PROBLEM


class ProblemSerializer(serializers.Serializer):
    type = serializers.CharField(default="about:blank")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For invalid input: the messages per field (`tags.3`: an item of a list).",
    )


def _problem(description: str) -> OpenApiResponse:
    return OpenApiResponse(ProblemSerializer, description=description)


# Keyed (status, media type): errors are served as application/problem+json, not the
# renderer's application/json.
PROBLEM_RESPONSES = {
    (400, PROBLEM): _problem("Invalid input (per-field `errors`)."),
    (401, PROBLEM): _problem(
        "Missing, malformed, wrong, expired or revoked API key (one answer for all)."
    ),
    (403, PROBLEM): _problem("The key lacks the scope this request needs."),
    (404, PROBLEM): _problem("No such object for this tenant."),
    (406, PROBLEM): _problem("The Accept header excludes JSON."),
    (429, PROBLEM): _problem(
        "Rate limit reached (per key or per tenant); see the Retry-After header."
    ),
}
# Operations that read a request body.
BODY_PROBLEM_RESPONSES = {
    **PROBLEM_RESPONSES,
    (413, PROBLEM): _problem("The request body is too large."),
    (415, PROBLEM): _problem("The body is not in the documented media type."),
}

# Operations that take an Idempotency-Key.
IDEMPOTENT_RESPONSES = {
    **BODY_PROBLEM_RESPONSES,
    (409, PROBLEM): _problem("A request with this Idempotency-Key is still running."),
    (422, PROBLEM): _problem("This Idempotency-Key was used with a different request."),
    (503, PROBLEM): _problem("Idempotent requests are briefly unavailable; retry."),
}


class APIKeyScheme(OpenApiAuthenticationExtension):
    target_class = "saas.api.authentication.APIKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant API key: `Authorization: Bearer atr_live_...`.",
        }
