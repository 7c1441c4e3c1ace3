"""Knowledge base over the REST API: documents (list, upload, get, delete) and search.
Thin views: validate, call one service or selector, serialise."""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied as APIPermissionDenied
from rest_framework.exceptions import ValidationError as APIValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from retrieval.models import MAX_TAGS, TAG_MAX_CHARS, Document
from retrieval.selectors import (
    document_by_public_id,
    document_pks,
    documents_for_api,
    knowledge_search,
)
from retrieval.services import document_delete, document_upload
from saas.api.idempotency import PARAMETER as IDEMPOTENCY_KEY
from saas.api.idempotency import idempotent
from saas.api.pagination import NewestFirst
from saas.api.schema import BODY_PROBLEM_RESPONSES, IDEMPOTENT_RESPONSES, PROBLEM_RESPONSES
from saas.api.views import TenantAPIView
from tenants.models import APIKey

READ, WRITE, SEARCH = (
    APIKey.Scope.DOCUMENTS_READ,
    APIKey.Scope.DOCUMENTS_WRITE,
    APIKey.Scope.SEARCH,
)


class DocumentSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = Document
        fields = [
            "id", "title", "filename", "kind", "size_bytes", "status", "progress", "error",
            "warnings", "flags", "chunk_count", "tags", "embedding_model", "created_at",
            "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="txt, md, html, pdf or docx; type read from content.")


class SearchSerializer(serializers.Serializer):
    query = serializers.CharField(max_length=2000, trim_whitespace=True)
    k = serializers.IntegerField(min_value=1, max_value=20, default=5)
    document_ids = serializers.ListField(
        child=serializers.UUIDField(), required=False, max_length=100
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=TAG_MAX_CHARS), required=False, max_length=MAX_TAGS
    )


class HitSerializer(serializers.Serializer):
    document_id = serializers.UUIDField(source="document_public_id")
    title = serializers.CharField()
    text = serializers.CharField()
    page = serializers.IntegerField(allow_null=True)
    heading_path = serializers.ListField(child=serializers.CharField())
    chunk_index = serializers.IntegerField(source="index")
    similarity = serializers.FloatField()
    score = serializers.FloatField()
    flags = serializers.ListField(
        child=serializers.CharField(), help_text="Instruction-like text found in this passage."
    )


class SearchResultSerializer(serializers.Serializer):
    results = HitSerializer(many=True)


class DocumentsAPI(TenantAPIView):
    required_scopes = {"GET": READ, "POST": WRITE}
    parser_classes = [MultiPartParser]
    pagination_class = NewestFirst  # for the schema: the cursor parameters and the page body

    # Keyed (status, media type) like the problem responses: drf-spectacular takes the smallest
    # key as the main response, and only then sees a list (cursor parameters, operationId).
    @extend_schema(
        responses={(200, "application/json"): DocumentSerializer(many=True), **PROBLEM_RESPONSES}
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(documents_for_api(tenant=request.tenant), request, self)
        return paginator.get_paginated_response(DocumentSerializer(page, many=True).data)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        parameters=[IDEMPOTENCY_KEY],
        responses={201: DocumentSerializer, **IDEMPOTENT_RESPONSES},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        form = UploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        try:
            document = document_upload(
                tenant=request.tenant, filename=upload.name, data=upload.read(),
                api_key=request.auth,
            )  # fmt: skip
        except ValidationError as error:
            raise APIValidationError({"file": error.messages}) from None
        return Response(DocumentSerializer(document).data, status=status.HTTP_201_CREATED)


class DocumentAPI(TenantAPIView):
    required_scopes = {"GET": READ, "DELETE": WRITE}

    @extend_schema(responses={200: DocumentSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, document_id: uuid.UUID) -> Response:
        document = document_by_public_id(tenant=request.tenant, public_id=document_id)
        return Response(DocumentSerializer(document).data)

    @extend_schema(responses={204: OpenApiResponse(description="Deleted."), **PROBLEM_RESPONSES})
    def delete(self, request: Request, document_id: uuid.UUID) -> Response:
        document = document_by_public_id(tenant=request.tenant, public_id=document_id)
        try:
            document_delete(tenant=request.tenant, document=document, api_key=request.auth)
        except PermissionDenied as error:
            raise APIPermissionDenied(str(error)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class SearchAPI(TenantAPIView):
    required_scopes = {"POST": SEARCH}

    @extend_schema(
        request=SearchSerializer, responses={200: SearchResultSerializer, **BODY_PROBLEM_RESPONSES}
    )
    def post(self, request: Request) -> Response:
        form = SearchSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        query = form.validated_data
        document_ids = None
        if "document_ids" in query:
            document_ids = document_pks(tenant=request.tenant, public_ids=query["document_ids"])
            if not document_ids:  # none of them is this tenant's: nothing, not everything
                return Response({"results": []})
        hits = knowledge_search(
            tenant=request.tenant, query=query["query"], k=query["k"],
            document_ids=document_ids, tags=query.get("tags") or None,
            api_key_id=request.auth.pk,
        )  # fmt: skip
        return Response(SearchResultSerializer({"results": hits}).data)
