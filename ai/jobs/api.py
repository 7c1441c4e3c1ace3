"""Bulk jobs over the REST API (scope `jobs`): submit many prompts at once, or knowledge-base
documents to summarize or classify (202, worked through in the background), list, get (status,
counts, progress), read the results, cancel. Jobs belong to the tenant; another tenant's job id
answers 404 like a missing one (and its document ids are refused like missing ones)."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from ai.jobs.documents import INSTRUCTIONS_MAX_CHARS, LABEL_MAX_CHARS, MAX_LABELS, MIN_LABELS
from ai.jobs.selectors import job_by_public_id, job_items, jobs_for_api
from ai.jobs.services import (
    JobInput,
    JobLimitReached,
    job_cancel,
    job_submit,
    job_submit_documents,
)
from ai.models import Job, JobItem
from saas.api.idempotency import PARAMETER as IDEMPOTENCY_KEY
from saas.api.idempotency import idempotent
from saas.api.pagination import NewestFirst
from saas.api.schema import IDEMPOTENT_RESPONSES, PROBLEM_RESPONSES
from saas.api.views import TenantAPIView
from tenants.models import APIKey

JOBS = APIKey.Scope.JOBS
TAGS = ["Jobs"]


class JobSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    progress = serializers.IntegerField(
        read_only=True, help_text="Percent of the items finished, whatever their outcome."
    )
    batch_status = serializers.CharField(
        read_only=True,
        help_text="Batch mode: the provider batch's state as last seen (empty before it is sent).",
    )
    labels = serializers.ListField(
        child=serializers.CharField(), read_only=True,
        help_text="Classify: the labels each document gets one of (empty for other kinds).",
    )  # fmt: skip

    class Meta:
        model = Job
        fields = [
            "id", "kind", "mode", "status", "batch_status", "model", "system", "instructions",
            "labels", "max_tokens", "total_items", "succeeded_items", "failed_items",
            "cancelled_items", "progress", "input_tokens", "output_tokens", "cost_micros",
            "error", "created_at", "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class JobItemSerializer(serializers.ModelSerializer):
    document = serializers.UUIDField(
        source="document_id", read_only=True, allow_null=True,
        help_text="Summarize/classify: the document this item is about (null for prompts).",
    )  # fmt: skip

    class Meta:
        model = JobItem
        fields = [
            "index", "custom_id", "document", "truncated", "status", "output", "label", "error",
            "attempts", "model", "input_tokens", "output_tokens", "cost_micros", "request_id",
            "finished_at",
        ]  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {
            "request_id": {"help_text": "The usage record of the call that gave this result."},
            "truncated": {
                "help_text": "Summarize/classify: the document was longer than "
                "JOBS_DOCUMENT_MAX_CHARS (or the plan's prompt limit): only its beginning "
                "was sent."
            },
            "output": {
                "help_text": "The model's answer; for classify, the label it gave (as spelled "
                "in `labels`)."
            },
            "label": {
                "help_text": "Classify: the label given (empty until then, and when the "
                "answer named none: the item fails, saying what the model answered)."
            },
        }


class ItemInputSerializer(serializers.Serializer):
    prompt = serializers.CharField(
        trim_whitespace=False, help_text="JOBS_MAX_PROMPT_CHARS at most."
    )
    custom_id = serializers.CharField(
        max_length=64, required=False, help_text="Your own id for this item, unique in the job."
    )


# Inline in the request schema: as a second component using Job.Kind it would collide with
# other `kind` enums and rename the responses' JobKindEnum to a hash.
@extend_schema_field({"type": "string", "enum": Job.Kind.values, "default": Job.Kind.PROMPTS})
class KindField(serializers.ChoiceField):
    pass


class JobCreateSerializer(serializers.Serializer):
    kind = KindField(
        choices=Job.Kind.choices, required=False, default=Job.Kind.PROMPTS,
        help_text="`prompts`: your prompts (`items` or `prompts`). `summarize`: a summary of "
        "each of `documents`. `classify`: one of `labels` for each of `documents`.",
    )  # fmt: skip
    documents = serializers.ListField(
        child=serializers.UUIDField(), required=False,
        help_text="Summarize/classify: ids of knowledge-base documents, each ready (indexed) "
        "and named once; JOBS_MAX_ITEMS at most. Each item's prompt quotes the document's "
        "text, up to JOBS_DOCUMENT_MAX_CHARS characters.",
    )  # fmt: skip
    labels = serializers.ListField(
        child=serializers.CharField(max_length=LABEL_MAX_CHARS),
        required=False, min_length=MIN_LABELS, max_length=MAX_LABELS,
        help_text="Classify: the labels to choose from, distinct ignoring case and punctuation.",
    )  # fmt: skip
    instructions = serializers.CharField(
        required=False, allow_blank=True, max_length=INSTRUCTIONS_MAX_CHARS,
        help_text="Summarize/classify: your own words added to each prompt (\"in three bullet "
        "points\", what each label means).",
    )  # fmt: skip
    items = ItemInputSerializer(
        many=True, required=False, help_text="The prompts, each with an optional id of yours."
    )
    prompts = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False),
        required=False,
        help_text="The prompts alone (instead of `items`).",
    )
    model = serializers.CharField(
        max_length=80, required=False, help_text="An Atrium model key; default: the route's."
    )
    system = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False,
        help_text="A system prompt for every item.",
    )  # fmt: skip
    max_tokens = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    mode = serializers.ChoiceField(
        choices=Job.Mode.choices, required=False, default=Job.Mode.DIRECT,
        help_text="`batch`: sent as one provider batch (OpenAI or Anthropic models only) at the "
        "provider's batch price (half, by default), results within 24 hours.",
    )  # fmt: skip

    def validate(self, data: dict) -> dict:
        if data["kind"] != Job.Kind.PROMPTS:
            errors = {
                name: [f"A {data['kind']} job takes `documents`, not `{name}`."]
                for name in ("items", "prompts")
                if name in data
            }
            if "documents" not in data:
                errors["documents"] = ["Send the ids of the documents to work on."]
            if errors:
                raise serializers.ValidationError(errors)
            return data
        errors = {
            name: ["Only summarize and classify jobs take this."]
            for name in ("documents", "labels", "instructions")
            if name in data
        }
        if ("items" in data) == ("prompts" in data):
            errors["items"] = ["Send either `items` or `prompts`."]
        if errors:
            raise serializers.ValidationError(errors)
        return data

    def inputs(self) -> list[JobInput]:
        data = self.validated_data
        if "prompts" in data:
            return [JobInput(prompt) for prompt in data["prompts"]]
        return [JobInput(item["prompt"], item.get("custom_id", "")) for item in data["items"]]


class JobLimitProblem(exceptions.APIException):
    status_code = 429
    wait = 60


class JobsAPI(TenantAPIView):
    required_scopes = {"GET": JOBS, "POST": JOBS}
    pagination_class = NewestFirst

    @extend_schema(
        tags=TAGS,
        responses={(200, "application/json"): JobSerializer(many=True), **PROBLEM_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(jobs_for_api(), request, self)
        return paginator.get_paginated_response(JobSerializer(page, many=True).data)

    @extend_schema(
        tags=TAGS,
        request=JobCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={202: JobSerializer, **IDEMPOTENT_RESPONSES},
        description="Queue a job of many prompts (JOBS_MAX_ITEMS at most; one model call each, "
        "billed like any other; `mode: batch` sends them as one provider batch at its lower "
        "price), or of knowledge-base documents to summarize or classify (`kind`, "
        "`documents`, `labels`: one item per document, its result naming the document). "
        "Answers at once; poll the job or receive the `job.completed` "
        "/ `job.failed` webhook, then read its results. Too many active jobs: 429.",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        form = JobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        options = {
            "model": data.get("model", ""), "system": data.get("system", ""),
            "max_tokens": data.get("max_tokens"), "mode": data.get("mode", Job.Mode.DIRECT),
        }  # fmt: skip
        try:
            if data["kind"] == Job.Kind.PROMPTS:
                job = job_submit(
                    tenant=request.tenant, inputs=form.inputs(), api_key=request.auth, **options
                )
            else:
                job = job_submit_documents(
                    tenant=request.tenant, kind=data["kind"], documents=data["documents"],
                    labels=data.get("labels"), instructions=data.get("instructions", ""),
                    api_key=request.auth, **options,
                )  # fmt: skip
        except ValidationError as error:
            raise exceptions.ValidationError(error.message_dict) from None
        except JobLimitReached as error:
            raise JobLimitProblem(str(error)) from None
        response = Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/jobs/{job.public_id}"
        return response


class JobAPI(TenantAPIView):
    required_scopes = {"GET": JOBS}

    @extend_schema(tags=TAGS, responses={200: JobSerializer, **PROBLEM_RESPONSES})
    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        job = job_by_public_id(tenant=request.tenant, public_id=job_id)
        return Response(JobSerializer(job).data)


class InIndexOrder(NewestFirst):
    ordering = ("index",)
    page_size = 100


class JobResultsAPI(TenantAPIView):
    required_scopes = {"GET": JOBS}
    pagination_class = InIndexOrder

    @extend_schema(
        tags=TAGS,
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                enum=JobItem.Status.values,
                description="Only the items in this state.",
            )
        ],
        responses={(200, "application/json"): JobItemSerializer(many=True), **PROBLEM_RESPONSES},
    )
    def get(self, request: Request, job_id: uuid.UUID) -> Response:
        job = job_by_public_id(tenant=request.tenant, public_id=job_id)
        wanted = request.query_params.get("status")
        if wanted is not None and wanted not in JobItem.Status.values:
            choices = ", ".join(JobItem.Status.values)
            raise exceptions.ValidationError({"status": [f"Use one of {choices}."]})
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(job_items(job=job, status=wanted), request, self)
        return paginator.get_paginated_response(JobItemSerializer(page, many=True).data)


class JobCancelAPI(TenantAPIView):
    required_scopes = {"POST": JOBS}

    @extend_schema(
        tags=TAGS,
        request=None,
        responses={200: JobSerializer, **PROBLEM_RESPONSES},
        description="Cancel the job's pending items; running ones finish. A finished job is "
        "returned unchanged (so a retry is safe).",
    )
    def post(self, request: Request, job_id: uuid.UUID) -> Response:
        job = job_by_public_id(tenant=request.tenant, public_id=job_id)
        job = job_cancel(tenant=request.tenant, job=job, api_key=request.auth)
        return Response(JobSerializer(job).data)
