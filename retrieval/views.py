"""Knowledge-base pages: documents (upload, status, delete) and search / ask."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import View

from ai.gateway import GatewayError
from retrieval.answering import knowledge_answer
from retrieval.forms import AskForm, EmbeddingModelForm, TagsForm, UploadForm
from retrieval.models import Document
from retrieval.reindex import embedding_switch_cancel, embedding_switch_start
from retrieval.selectors import (
    document_by_public_id,
    document_chunks,
    document_for,
    documents_page,
    embedding_models_for,
    knowledge_base_of,
    tags_of,
)
from retrieval.services import document_delete, document_tag, document_upload, tags_parse
from saas.lib.views import TenantAdminRequiredMixin, TenantMemberRequiredMixin

MAX_FILES_PER_UPLOAD = 20


class DocumentsView(TenantMemberRequiredMixin, View):
    template_name = "retrieval/documents.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.htmx and request.GET.get("panel"):
            return render(request, "retrieval/_documents_table.html", self._context(request))
        return render(request, self.template_name, self._context(request))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = UploadForm(request.POST, request.FILES)
        if not form.is_valid():
            messages.error(request, "Choose at least one file to upload.")
            return render(request, self.template_name, self._context(request), status=400)
        uploads = form.cleaned_data["files"][:MAX_FILES_PER_UPLOAD]
        accepted = 0
        for upload in uploads:
            try:
                document_upload(
                    tenant=request.tenant, user=request.user, filename=upload.name,
                    data=upload.read(),
                )  # fmt: skip
                accepted += 1
            except ValidationError as error:
                messages.error(request, " ".join(error.messages))
        if accepted:
            messages.success(request, f"{accepted} file(s) uploaded; indexing has started.")
        return redirect("documents")

    def _context(self, request: HttpRequest) -> dict[str, object]:
        page = documents_page(tenant=request.tenant, page=request.GET.get("page"))
        knowledge_base = knowledge_base_of(tenant=request.tenant)
        context = {
            "documents": page.object_list, "page": page, "form": UploadForm(),
            "knowledge_base": knowledge_base,
        }  # fmt: skip
        if request.membership.is_admin and not knowledge_base.next_embedding_model:
            models = [
                key
                for key in embedding_models_for(tenant=request.tenant)
                if key != knowledge_base.embedding_model
            ]
            context["model_form"] = EmbeddingModelForm(models=models) if models else None
        return context


class EmbeddingModelView(TenantAdminRequiredMixin, View):
    """Start or cancel re-embedding the knowledge base with another model."""

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            if request.POST.get("action") == "cancel":
                embedding_switch_cancel(tenant=request.tenant, user=request.user)
                messages.success(request, "The model switch was cancelled.")
                return redirect("documents")
            form = EmbeddingModelForm(
                request.POST, models=embedding_models_for(tenant=request.tenant)
            )
            if not form.is_valid():
                messages.error(request, "Choose one of the embedding models offered.")
                return redirect("documents")
            model = form.cleaned_data["model"]
            embedding_switch_start(tenant=request.tenant, user=request.user, model=model)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return redirect("documents")
        messages.success(
            request,
            f"Re-embedding with {model} has started. Search keeps using the current model "
            "until every document is done.",
        )
        return redirect("documents")


class DocumentView(TenantMemberRequiredMixin, View):
    def get(self, request: HttpRequest, document_id: int) -> HttpResponse:
        document = document_for(tenant=request.tenant, document_id=document_id)
        form = TagsForm(initial={"tags": ", ".join(document.tags)})
        return self._render(request, document, form)

    def post(self, request: HttpRequest, document_id: int) -> HttpResponse:
        """Set the document's tags."""
        document = document_for(tenant=request.tenant, document_id=document_id)
        form = TagsForm(request.POST)
        if form.is_valid():
            try:
                tags = tags_parse(form.cleaned_data["tags"])
            except ValidationError as error:
                form.add_error("tags", error)
            else:
                document_tag(tenant=request.tenant, user=request.user, document=document, tags=tags)
                messages.success(request, "Tags saved.")
                return redirect("document", document_id=document.pk)
        return self._render(request, document, form, status=400)

    def _render(
        self, request: HttpRequest, document: Document, form: TagsForm, status: int = 200
    ) -> HttpResponse:
        chunks = document_chunks(tenant=request.tenant, document=document)
        context = {"document": document, "chunks": chunks, "tags_form": form}
        return render(request, "retrieval/document.html", context, status=status)


class DocumentByPublicIdView(TenantMemberRequiredMixin, View):
    """Where a chat citation points (`?chunk=N`): the document's page at that passage."""

    def get(self, request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
        document = document_by_public_id(tenant=request.tenant, public_id=public_id)
        chunk = request.GET.get("chunk", "")
        anchor = f"#chunk-{int(chunk)}" if chunk.isdigit() else ""
        return redirect(reverse("document", args=[document.pk]) + anchor)


class DocumentDeleteView(TenantMemberRequiredMixin, View):
    def post(self, request: HttpRequest, document_id: int) -> HttpResponse:
        document = document_for(tenant=request.tenant, document_id=document_id)
        try:
            document_delete(tenant=request.tenant, user=request.user, document=document)
        except PermissionDenied as error:
            raise PermissionDenied(str(error)) from None
        messages.success(request, f"“{document.title}” was deleted with everything built on it.")
        return redirect("documents")


class AskView(TenantMemberRequiredMixin, View):
    template_name = "retrieval/ask.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        form = AskForm(request.GET or None)
        context: dict[str, object] = {"form": form, "tags": tags_of(tenant=request.tenant)}
        if form.is_valid():
            try:
                tag = form.cleaned_data["tag"]
                context["answer"] = knowledge_answer(
                    tenant=request.tenant, question=form.cleaned_data["q"],
                    tags=[tag] if tag else None, user_id=request.user.pk,
                )  # fmt: skip
            except GatewayError as error:
                context["error"] = error.message
        return render(request, self.template_name, context)
