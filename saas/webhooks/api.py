"""Webhook endpoints over the REST API (scope `webhooks`): list, create, get, delete, rotate
the secret, send a test event, list deliveries. Thin views: validate, call one service or
selector, serialise. Secrets appear only in the answers to create and rotate."""

from __future__ import annotations

import uuid

from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied as APIPermissionDenied
from rest_framework.exceptions import ValidationError as APIValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from saas.api.pagination import NewestFirst
from saas.api.schema import BODY_PROBLEM_RESPONSES, PROBLEM_RESPONSES
from saas.api.views import TenantAPIView
from saas.webhooks.events import EVENT_TYPES, SUBSCRIBABLE
from saas.webhooks.models import (
    DESCRIPTION_MAX_CHARS,
    URL_MAX_CHARS,
    WebhookDelivery,
    WebhookEndpoint,
)
from saas.webhooks.selectors import (
    webhook_by_public_id,
    webhook_deliveries_for_api,
    webhooks_for_api,
)
from saas.webhooks.services import (
    webhook_create,
    webhook_delete,
    webhook_secret_rotate,
    webhook_test,
)
from tenants.models import APIKey

WEBHOOKS = APIKey.Scope.WEBHOOKS
_EVENTS_HELP = "Event types to receive; empty or `*`: all. " + "; ".join(
    f"`{name}`: {meaning.rstrip('.')}" for name, meaning in EVENT_TYPES.items()
)
_SECRET_HELP = (
    "The signing secret (`whsec_...`), shown only now. Verify each delivery's `webhook-signature` "
    "with it, e.g. `standardwebhooks.Webhook(secret).verify(body, headers)`."
)


class WebhookSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    active = serializers.BooleanField(source="is_active", read_only=True)
    events = serializers.ListField(child=serializers.CharField(), read_only=True)
    previous_secret_expires_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="After a rotation: until then, deliveries also carry a signature with the "
        "previous secret.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "url", "description", "events", "active", "created_at", "created_by",
            "previous_secret_expires_at",
        ]  # fmt: skip
        read_only_fields = fields


class WebhookWithSecretSerializer(WebhookSerializer):
    """For the schema: the views add the secret, which is not a field of the model."""

    secret = serializers.CharField(read_only=True, help_text=_SECRET_HELP)

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookCreateSerializer(serializers.Serializer):
    url = serializers.CharField(
        max_length=URL_MAX_CHARS,
        help_text="An https:// URL on a public address, without user name or password.",
    )
    description = serializers.CharField(
        max_length=DESCRIPTION_MAX_CHARS, required=False, allow_blank=True, default=""
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=SUBSCRIBABLE),
        required=False,
        default=list,
        max_length=len(SUBSCRIBABLE),
        help_text=_EVENTS_HELP,
    )


class DeliverySerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    webhook_id = serializers.UUIDField(source="endpoint.public_id", read_only=True)
    payload = serializers.JSONField(read_only=True, help_text="The body sent.")
    event_id = serializers.CharField(read_only=True, help_text="The `webhook-id` header.")
    next_attempt_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="Pending: when the next attempt is due."
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "webhook_id", "event_id", "event_type", "payload", "status", "attempts",
            "last_status_code", "last_error", "next_attempt_at", "created_at", "delivered_at",
        ]  # fmt: skip
        read_only_fields = fields


def _refused(error: ValidationError | PermissionDenied) -> Exception:
    """A service's refusal as the API's 400 (per field) or 403."""
    if isinstance(error, PermissionDenied):
        return APIPermissionDenied(str(error))
    errors = (
        error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
    )
    if NON_FIELD_ERRORS in errors:
        errors["non_field_errors"] = errors.pop(NON_FIELD_ERRORS)
    return APIValidationError(errors)


class WebhooksAPI(TenantAPIView):
    required_scopes = {"GET": WEBHOOKS, "POST": WEBHOOKS}
    pagination_class = NewestFirst  # for the schema: the cursor parameters and the page body

    # Keyed (status, media type): drf-spectacular then sees a list (see retrieval/api.py).
    @extend_schema(
        responses={(200, "application/json"): WebhookSerializer(many=True), **PROBLEM_RESPONSES}
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(webhooks_for_api(tenant=request.tenant), request, self)
        return paginator.get_paginated_response(WebhookSerializer(page, many=True).data)

    @extend_schema(
        request=WebhookCreateSerializer,
        responses={201: WebhookWithSecretSerializer, **BODY_PROBLEM_RESPONSES},
    )
    def post(self, request: Request) -> Response:
        form = WebhookCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            endpoint, secret = webhook_create(
                tenant=request.tenant, api_key=request.auth, **form.validated_data
            )
        except (ValidationError, PermissionDenied) as error:
            raise _refused(error) from None
        body = {**WebhookSerializer(endpoint).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookAPI(TenantAPIView):
    required_scopes = {"GET": WEBHOOKS, "DELETE": WEBHOOKS}

    @extend_schema(responses={200: WebhookSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, webhook_id: uuid.UUID) -> Response:
        endpoint = webhook_by_public_id(tenant=request.tenant, public_id=webhook_id)
        return Response(WebhookSerializer(endpoint).data)

    @extend_schema(responses={204: OpenApiResponse(description="Deleted."), **PROBLEM_RESPONSES})
    def delete(self, request: Request, webhook_id: uuid.UUID) -> Response:
        endpoint = webhook_by_public_id(tenant=request.tenant, public_id=webhook_id)
        try:
            webhook_delete(tenant=request.tenant, endpoint=endpoint, api_key=request.auth)
        except PermissionDenied as error:
            raise _refused(error) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretAPI(TenantAPIView):
    required_scopes = {"POST": WEBHOOKS}

    @extend_schema(request=None, responses={200: WebhookWithSecretSerializer, **PROBLEM_RESPONSES})
    def post(self, request: Request, webhook_id: uuid.UUID) -> Response:
        endpoint = webhook_by_public_id(tenant=request.tenant, public_id=webhook_id)
        try:
            endpoint, secret = webhook_secret_rotate(
                tenant=request.tenant, endpoint=endpoint, api_key=request.auth
            )
        except PermissionDenied as error:
            raise _refused(error) from None
        return Response({**WebhookSerializer(endpoint).data, "secret": secret})


class WebhookTestAPI(TenantAPIView):
    required_scopes = {"POST": WEBHOOKS}

    @extend_schema(
        request=None,
        responses={
            202: OpenApiResponse(DeliverySerializer, description="A `ping` event was queued."),
            **PROBLEM_RESPONSES,
        },
    )
    def post(self, request: Request, webhook_id: uuid.UUID) -> Response:
        endpoint = webhook_by_public_id(tenant=request.tenant, public_id=webhook_id)
        try:
            delivery = webhook_test(tenant=request.tenant, endpoint=endpoint, api_key=request.auth)
        except PermissionDenied as error:
            raise _refused(error) from None
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveriesAPI(TenantAPIView):
    required_scopes = {"GET": WEBHOOKS}
    pagination_class = NewestFirst

    @extend_schema(
        responses={(200, "application/json"): DeliverySerializer(many=True), **PROBLEM_RESPONSES}
    )
    def get(self, request: Request, webhook_id: uuid.UUID) -> Response:
        endpoint = webhook_by_public_id(tenant=request.tenant, public_id=webhook_id)
        deliveries = webhook_deliveries_for_api(tenant=request.tenant, endpoint=endpoint)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(deliveries, request, self)
        return paginator.get_paginated_response(DeliverySerializer(page, many=True).data)
