"""Errors the gateway raises to its callers. Messages are safe to show to end users."""

from __future__ import annotations


class GatewayError(Exception):
    code = "ai_error"
    status = 502

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class AIDisabled(GatewayError):
    code = "ai_disabled"
    status = 503


class InputRejected(GatewayError):
    code = "input_rejected"
    status = 400


class ModelNotAllowed(GatewayError):
    code = "model_not_allowed"
    status = 400


class ProviderRefused(GatewayError):
    """A non-retriable provider error (bad key, bad request): failing over would not help."""

    code = "provider_refused"
    status = 502


class ProviderRejectedRequest(ProviderRefused):
    """The provider refused the request itself as invalid (its 4xx other than auth, e.g. input
    over the model's context): most likely the caller's input, so a 400 for the caller, not a
    5xx it would retry."""

    code = "provider_rejected_request"
    status = 400


class AllProvidersFailed(GatewayError):
    code = "providers_unavailable"
    status = 503


class StructuredOutputInvalid(GatewayError):
    code = "invalid_structured_output"
    status = 502
