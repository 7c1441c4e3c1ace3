"""The OpenAI-compatible endpoints (ai.openai_compat has the shapes and the streaming).
Errors are problem+json with OpenAI's `error` object added (ai.openai_compat.errors)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponseBase
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from ai.gateway import GatewayError
from ai.gateway.tokens import estimate_tokens
from ai.openai_compat.chat import chat_complete, chat_prepare
from ai.openai_compat.embeddings import embeddings_create, models_list
from ai.openai_compat.errors import (
    OPENAI_BODY_PROBLEM_RESPONSES,
    OPENAI_IDEMPOTENT_RESPONSES,
    OPENAI_LIST_PROBLEM_RESPONSES,
    gateway_errors,
    openai_exception_handler,
)
from ai.openai_compat.serializers import (
    ChatCompletionCreateSerializer,
    ChatCompletionEventSerializer,
    ChatCompletionSerializer,
    EmbeddingCreateSerializer,
    EmbeddingListSerializer,
    OpenAIModelListSerializer,
)
from ai.openai_compat.streaming import DONE, event_stream_response
from saas.api.idempotency import PARAMETER as IDEMPOTENCY_KEY
from saas.api.idempotency import idempotent
from saas.api.permissions import ScopeRequired
from saas.api.throttling import tokens_settle, tokens_take
from saas.api.views import TenantAPIView
from tenants.models import APIKey

CHAT = APIKey.Scope.CHAT
TAGS = ["OpenAI-compatible"]
ERRORS = (
    " Errors are `application/problem+json` problems that also carry OpenAI's error object "
    "as `error` (message, type, param, code), so OpenAI SDKs raise their usual exceptions."
)
STREAM_DESCRIPTION = (
    "With `stream: true`: `text/event-stream` of `data: {chat.completion.chunk}` events (the "
    "first with the role, then content deltas, then one with `finish_reason` and, for a "
    "knowledge-base answer, `atrium.citations`; with `stream_options.include_usage` a last "
    "chunk with `usage` and no choices), then `data: [DONE]`. [DONE] is sent only when the "
    "answer completed: a stream that breaks (provider cut, key revoked) ends with "
    '`data: {"error": {...}}` instead.'
)


class EventStreamRenderer(JSONRenderer):
    """Lets `Accept: text/event-stream` through content negotiation; anything rendered
    through it (an error) is JSON."""

    media_type = "text/event-stream"
    format = "json"  # no `?format=` choice: the body decides (`stream`)


class AnyKey(ScopeRequired):
    """GET (and HEAD) with any valid key of the tenant, whatever its scopes."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, APIKey) and request.method in ("GET", "HEAD"):
            return True
        return super().has_permission(request, view)


class OpenAIAPIView(TenantAPIView):
    def get_exception_handler(self):
        return openai_exception_handler


class ChatCompletionsAPI(OpenAIAPIView):
    required_scopes = {"POST": CHAT}
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        tags=TAGS,
        operation_id="createChatCompletion",
        summary="Create a chat completion (OpenAI-compatible)",
        description=STREAM_DESCRIPTION + ERRORS,
        request=ChatCompletionCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            (200, "application/json"): OpenApiResponse(
                ChatCompletionSerializer, description="`stream` false (the default)."
            ),
            (200, "text/event-stream"): OpenApiResponse(
                ChatCompletionEventSerializer,
                description="`stream` true: server-sent events (each described here).",
            ),
            **OPENAI_IDEMPOTENT_RESPONSES,
        },
        examples=[
            OpenApiExample(
                "Grounded in the knowledge base",
                request_only=True,
                value={
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "Can I get a refund?"}],
                    "atrium": {"knowledge_base": True, "k": 5},
                },
            )
        ],
    )
    @idempotent
    def post(self, request: Request) -> Response | HttpResponseBase:
        form = ChatCompletionCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        with gateway_errors():
            chat = chat_prepare(
                tenant=request.tenant, api_key=request.auth, request=form.validated_data,
                absolute_url=request.build_absolute_uri,
            )  # fmt: skip
            key = request.auth
            charged = tokens_take(key, chat.token_estimate)
            chat.on_done = lambda used: tokens_settle(key, charged, used)
            try:
                if chat.stream:
                    response = event_stream_response(request._request, chat)
                    response.complete_marker = DONE  # kept for an idempotent retry if reached
                    return response
                # JSON even when the client's Accept also allows event streams.
                return Response(chat_complete(chat), content_type="application/json")
            except GatewayError:
                tokens_settle(key, charged, 0)  # refused before any work
                raise


class EmbeddingsAPI(OpenAIAPIView):
    required_scopes = {"POST": CHAT}

    @extend_schema(
        tags=TAGS,
        operation_id="createEmbedding",
        summary="Create embeddings (OpenAI-compatible)",
        description="Vectors from the named model only (never a fallback model, whose vectors "
        "would not be comparable)." + ERRORS,
        request=EmbeddingCreateSerializer,
        responses={200: EmbeddingListSerializer, **OPENAI_BODY_PROBLEM_RESPONSES},
    )
    def post(self, request: Request) -> Response:
        form = EmbeddingCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        texts = form.validated_data["input"]
        charged = tokens_take(request.auth, sum(estimate_tokens(text) for text in texts))
        try:
            with gateway_errors():
                body = embeddings_create(
                    tenant=request.tenant, api_key=request.auth, request=form.validated_data
                )
        except BaseException:
            tokens_settle(request.auth, charged, 0)
            raise
        tokens_settle(request.auth, charged, body["usage"]["total_tokens"])
        return Response(body)


class ModelsAPI(OpenAIAPIView):
    permission_classes = [AnyKey]

    @extend_schema(
        tags=TAGS,
        operation_id="listModels",
        summary="List the models this tenant may use (OpenAI-compatible)",
        description="Chat and embedding models this tenant may name now (its plan tier and "
        "policy allow them and a provider key, its own or the platform's, serves them). Any "
        "valid key may list them." + ERRORS,
        responses={200: OpenAIModelListSerializer, **OPENAI_LIST_PROBLEM_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        with gateway_errors():
            return Response(models_list(tenant=request.tenant))
