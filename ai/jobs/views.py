"""Jobs pages: the tenant's bulk jobs with their progress, one job's results, cancel. Members
see every job of the tenant; admins and a job's submitter may cancel it. While a job runs, the
panel re-renders itself every few seconds (htmx polling)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from ai.jobs.selectors import job_by_public_id, job_items_page, jobs_page
from ai.jobs.services import job_cancel
from ai.models import Job
from saas.lib.views import TenantMemberRequiredMixin


class JobsView(TenantMemberRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        page = jobs_page(tenant=request.tenant, page=request.GET.get("page"))
        context = {
            "jobs": page.object_list, "page": page,
            "polling": any(job.is_active for job in page.object_list),
        }  # fmt: skip
        template = "ai/jobs_panel.html" if request.htmx else "ai/jobs.html"
        return render(request, template, context)


class JobView(TenantMemberRequiredMixin, View):
    def get(self, request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
        job = job_by_public_id(tenant=request.tenant, public_id=job_id)
        page = job_items_page(tenant=request.tenant, job=job, page=request.GET.get("page"))
        context = {
            "job": job, "items": page.object_list, "page": page,
            "may_cancel": _may_cancel(request, job),
        }  # fmt: skip
        template = "ai/jobs_detail_panel.html" if request.htmx else "ai/jobs_detail.html"
        return render(request, template, context)


class JobCancelView(TenantMemberRequiredMixin, View):
    def post(self, request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
        job = job_by_public_id(tenant=request.tenant, public_id=job_id)
        try:
            job = job_cancel(tenant=request.tenant, job=job, user=request.user)
        except PermissionDenied as error:
            raise PermissionDenied(str(error)) from None
        if job.status == Job.Status.CANCELLED:
            messages.success(request, "The job was cancelled; items already running finish.")
        return redirect("job", job_id=job.public_id)


def _may_cancel(request: HttpRequest, job: Job) -> bool:
    return job.is_active and (request.membership.is_admin or job.user_id == request.user.pk)
