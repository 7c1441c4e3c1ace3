"""Usage over the REST API: a tenant's metered model calls for a period."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing.selectors import usage_report
from saas.api.schema import PROBLEM_RESPONSES
from saas.api.views import TenantAPIView
from tenants.models import APIKey

MAX_PERIOD_DAYS = 366


class UsageQuerySerializer(serializers.Serializer):
    start = serializers.DateField(
        required=False, help_text="First day (UTC), default: the first of this month."
    )
    end = serializers.DateField(
        required=False, help_text="Last day (UTC, inclusive), default: today."
    )

    def validate(self, attrs: dict) -> dict:
        today = timezone.now().date()
        end = attrs.get("end") or today
        start = attrs.get("start") or min(end, today).replace(day=1)
        if start > end:
            raise serializers.ValidationError({"start": ["The start is after the end."]})
        if (end - start).days >= MAX_PERIOD_DAYS:
            raise serializers.ValidationError(
                {"end": [f"A period is at most {MAX_PERIOD_DAYS} days."]}
            )
        return {"start": start, "end": end}


class UsageLineSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField(help_text="Input tokens served from a prompt cache.")
    cost_micros = serializers.IntegerField(help_text="Cost in millionths of a US dollar (exact).")
    cost_usd = serializers.SerializerMethodField(help_text="The same cost as a decimal string.")

    def get_cost_usd(self, line: dict) -> str:
        return str(Decimal(line["cost_micros"]).scaleb(-6).quantize(Decimal("0.000001")))


class UsageDaySerializer(UsageLineSerializer):
    date = serializers.DateField()


class UsageModelSerializer(UsageLineSerializer):
    model = serializers.CharField(help_text="Empty for calls refused before any model ran.")


class UsageFeatureSerializer(UsageLineSerializer):
    feature = serializers.CharField()


class UsageReportSerializer(serializers.Serializer):
    start = serializers.DateField()
    end = serializers.DateField()
    totals = UsageLineSerializer()
    by_day = UsageDaySerializer(many=True)
    by_model = UsageModelSerializer(many=True)
    by_feature = UsageFeatureSerializer(many=True)


class UsageAPI(TenantAPIView):
    required_scopes = {"GET": APIKey.Scope.USAGE_READ}

    @extend_schema(
        parameters=[
            OpenApiParameter("start", date, description="First day (UTC), YYYY-MM-DD."),
            OpenApiParameter("end", date, description="Last day (UTC, inclusive), YYYY-MM-DD."),
        ],
        responses={200: UsageReportSerializer, **PROBLEM_RESPONSES},
    )
    def get(self, request: Request) -> Response:
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = usage_report(tenant=request.tenant, **query.validated_data)
        body = {
            "start": report.start,
            "end": report.end,
            "totals": asdict(report.totals),
            "by_day": [{"date": day, **asdict(line)} for day, line in report.by_day],
            "by_model": [{"model": key, **asdict(line)} for key, line in report.by_model],
            "by_feature": [{"feature": key, **asdict(line)} for key, line in report.by_feature],
        }
        return Response(UsageReportSerializer(body).data)
