"""Bulk jobs over the REST API (scope `jobs`): submit many prompts at once (202, worked through
in the background), list, get (status, counts, progress), read the results, cancel. Jobs belong
to the tenant; another tenant's job id answers 404 like a missing one."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from ai.jobs.selectors import job_by_public_id, job_items, jobs_for_api
from ai.jobs.services import JobInput, JobLimitReached, job_cancel, job_submit
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

    class Meta:
        model = Job
        fields = [
            "id", "kind", "mode", "status", "batch_status", "model", "system", "max_tokens",
            "total_items", "succeeded_items", "failed_items", "cancelled_items", "progress",
            "input_tokens", "output_tokens", "cost_micros", "error", "created_at", "started_at",
            "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class JobItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobItem
        fields = [
            "index", "custom_id", "status", "output", "error", "attempts", "model",
            "input_tokens", "output_tokens", "cost_micros", "request_id", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {
            "request_id": {"help_text": "The usage record of the call that gave this result."}
        }


class ItemInputSerializer(serializers.Serializer):
    prompt = serializers.CharField(
        trim_whitespace=False, help_text="JOBS_MAX_PROMPT_CHARS at most."
    )
    custom_id = serializers.CharField(
        max_length=64, required=False, help_text="Your own id for this item, unique in the job."
    )


class JobCreateSerializer(serializers.Serializer):
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
        if ("items" in data) == ("prompts" in data):
            raise serializers.ValidationError({"items": ["Send either `items` or `prompts`."]})
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
        "price). Answers at once; poll the job or receive the `job.completed` "
        "/ `job.failed` webhook, then read its results. Too many active jobs: 429.",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        form = JobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            job = job_submit(
                tenant=request.tenant,
                inputs=form.inputs(),
                model=data.get("model", ""),
                system=data.get("system", ""),
                max_tokens=data.get("max_tokens"),
                mode=data.get("mode", Job.Mode.DIRECT),
                api_key=request.auth,
            )
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
