"""OpenAPI pieces shared by the API views: the problem+json error body and the key scheme."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ProblemSerializer(serializers.Serializer):
    type = serializers.CharField(default="about:blank")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="For invalid input: the messages per field.",
    )


def _problem(description: str) -> OpenApiResponse:
    return OpenApiResponse(ProblemSerializer, description=description)


PROBLEM_RESPONSES = {
    400: _problem("Invalid input (per-field `errors`)."),
    401: _problem("Missing, malformed, wrong, expired or revoked API key (one answer for all)."),
    403: _problem("The key lacks the scope this request needs."),
    404: _problem("No such object for this tenant."),
    429: _problem("Rate limit reached (per key or per tenant); see the Retry-After header."),
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
