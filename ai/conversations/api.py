"""Conversations over the REST API (scope `chat`): start, list, get, delete; list messages and
send one (the answer comes back in the response; `Idempotency-Key` makes a retry safe and
billed once). API conversations belong to the tenant, not to a person."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from ai.conversations.selectors import api_conversation, api_conversations, messages_of
from ai.conversations.services import (
    ConversationBusy,
    conversation_delete,
    conversation_reply,
    conversation_start,
    history,
)
from ai.gateway import GatewayError
from ai.gateway.tokens import estimate_tokens
from ai.models import Conversation, Message
from saas.api.idempotency import PARAMETER as IDEMPOTENCY_KEY
from saas.api.idempotency import idempotent
from saas.api.pagination import NewestFirst
from saas.api.schema import IDEMPOTENT_RESPONSES, PROBLEM_RESPONSES, ProblemSerializer
from saas.api.throttling import tokens_settle, tokens_take
from saas.api.views import TenantAPIView
from tenants.models import APIKey

CHAT = APIKey.Scope.CHAT
TAGS = ["Conversations"]
# Most an answer may add to a message's token charge until the real count is known.
ANSWER_TOKENS_RESERVED = 1024


class ConversationSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "knowledge_base", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"title": {"required": False, "allow_blank": True, "max_length": 200}}


class CitationSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The [n] in the answer.")
    document_id = serializers.UUIDField()
    title = serializers.CharField()
    page = serializers.IntegerField(allow_null=True)
    chunk_index = serializers.IntegerField()


class MessageSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    citations = CitationSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id", "role", "content", "status", "error", "model", "model_label",
            "prompt_version", "input_tokens", "output_tokens", "cost_micros", "latency_ms",
            "ttft_ms", "citations", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class SendSerializer(serializers.Serializer):
    content = serializers.CharField(max_length=32_000, trim_whitespace=True)
    model = serializers.CharField(
        max_length=80, required=False, help_text="An Atrium model key; default: the route's."
    )


class ReplySerializer(serializers.Serializer):
    question = MessageSerializer()
    answer = MessageSerializer()


class RecentFirst(NewestFirst):
    """Conversations, the last active first (`limit` as every list)."""

    ordering = ("-updated_at", "-id")


class OldestFirst(NewestFirst):
    """A conversation's messages in order."""

    ordering = ("created_at", "id")
    page_size = 100


class ConversationsAPI(TenantAPIView):
    required_scopes = {"GET": CHAT, "POST": CHAT}
    pagination_class = RecentFirst

    @extend_schema(
        tags=TAGS,
        responses={(200, "application/json"): ConversationSerializer(many=True),
                   **PROBLEM_RESPONSES},
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(api_conversations(), request, self)
        return paginator.get_paginated_response(ConversationSerializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        request=ConversationSerializer,
        responses={201: ConversationSerializer, **IDEMPOTENT_RESPONSES},
        parameters=[IDEMPOTENCY_KEY],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        form = ConversationSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        conversation = conversation_start(
            tenant=request.tenant, title=form.validated_data.get("title", ""),
            knowledge_base=form.validated_data.get("knowledge_base", False), api_key=request.auth,
        )  # fmt: skip
        return Response(ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED)


class ConversationAPI(TenantAPIView):
    required_scopes = {"GET": CHAT, "DELETE": CHAT}

    @extend_schema(tags=TAGS, responses={200: ConversationSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, conversation_id: uuid.UUID) -> Response:
        conversation = api_conversation(tenant=request.tenant, public_id=conversation_id)
        return Response(ConversationSerializer(conversation).data)

    @extend_schema(
        tags=TAGS, responses={204: OpenApiResponse(description="Deleted."), **PROBLEM_RESPONSES}
    )
    def delete(self, request: Request, conversation_id: uuid.UUID) -> Response:
        conversation = api_conversation(tenant=request.tenant, public_id=conversation_id)
        conversation_delete(tenant=request.tenant, conversation=conversation)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConversationBusyProblem(exceptions.APIException):
    status_code = 409
    wait = 1


class AnswerFailed(exceptions.APIException):
    """The model call failed; the failed answer stays in the conversation with its reason."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.status_code = error.status
        self.wait = error.retry_after


class MessagesAPI(TenantAPIView):
    required_scopes = {"GET": CHAT, "POST": CHAT}
    pagination_class = OldestFirst

    @extend_schema(
        tags=TAGS,
        responses={(200, "application/json"): MessageSerializer(many=True), **PROBLEM_RESPONSES},
    )
    def get(self, request: Request, conversation_id: uuid.UUID) -> Response:
        conversation = api_conversation(tenant=request.tenant, public_id=conversation_id)
        paginator = self.pagination_class()
        messages = messages_of(tenant=request.tenant, conversation=conversation)
        page = paginator.paginate_queryset(messages, request, self)
        return paginator.get_paginated_response(MessageSerializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        request=SendSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: ReplySerializer,
            **IDEMPOTENT_RESPONSES,
            (502, "application/problem+json"): OpenApiResponse(
                ProblemSerializer,
                description="The model call failed (the answer is kept as failed).",
            ),
        },
    )
    @idempotent
    def post(self, request: Request, conversation_id: uuid.UUID) -> Response:
        conversation = api_conversation(tenant=request.tenant, public_id=conversation_id)
        form = SendSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        content = form.validated_data["content"]
        prior = sum(estimate_tokens(m["content"]) for m in history(request.tenant, conversation))
        charged = tokens_take(
            request.auth, prior + estimate_tokens(content) + ANSWER_TOKENS_RESERVED
        )
        try:
            exchange = conversation_reply(
                tenant=request.tenant, conversation=conversation, content=content,
                model=form.validated_data.get("model"),
                api_key=request.auth,
            )  # fmt: skip
        except ConversationBusy as error:
            tokens_settle(request.auth, charged, 0)
            raise ConversationBusyProblem(str(error)) from None
        except ValidationError as error:
            tokens_settle(request.auth, charged, 0)
            raise exceptions.ValidationError({"content": error.messages}) from None
        except GatewayError as error:
            tokens_settle(request.auth, charged, 0)
            raise AnswerFailed(error) from None
        answer = exchange.answer
        tokens_settle(request.auth, charged, answer.input_tokens + answer.output_tokens)
        body = ReplySerializer(exchange).data
        return Response(body, status=status.HTTP_201_CREATED)
