"""Switching the knowledge base's embedding model. The ready documents are re-embedded with the
next model in the background (queue `ingestion`) while searches keep using the current index;
the next model takes over in one transaction once every ready document has its vectors, and
the old vectors are removed a minute later (searches that started before the switch finish on
them). New uploads during a switch are embedded with both models (services._store)."""

from __future__ import annotations

import logging
import time

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_tenants.utils import tenant_context

from retrieval.events import index_changed
from retrieval.models import Chunk, Document, KnowledgeBase
from retrieval.selectors import embedding_models_for, knowledge_base_of
from retrieval.services import audit_write, authorise_write, document_ingest, embed_texts
from saas.lib.tasks import enqueue_for
from tenants.models import Tenant, User

logger = logging.getLogger(__name__)

# Old vectors outlive the switch by this long, for searches that chose the old model just before.
PRUNE_DELAY_S = 60


def embedding_switch_start(*, tenant: Tenant, user: User, model: str) -> KnowledgeBase:
    """Start re-embedding the knowledge base with `model` (admins only). Raises ValidationError
    with a message for the admin when the model cannot be used or a switch is running."""
    from retrieval.tasks import knowledge_base_reembed_task

    authorise_write(tenant, user, None, admin=True)
    if model not in embedding_models_for(tenant=tenant):
        raise ValidationError(f"The embedding model “{model}” is not available to you.")
    knowledge_base_of(tenant=tenant)  # make sure the row exists before locking it
    with tenant_context(tenant), transaction.atomic():
        knowledge_base = _locked()
        current = knowledge_base.embedding_model
        if model == current:
            raise ValidationError(f"The knowledge base already uses {model}.")
        if knowledge_base.next_embedding_model:
            raise ValidationError(
                f"A switch to {knowledge_base.next_embedding_model} is running. "
                "Cancel it first or wait until it finishes."
            )
        knowledge_base.next_embedding_model = model
        knowledge_base.switch_started_at = timezone.now()
        knowledge_base.switch_started_by = user.email
        knowledge_base.switch_error = ""
        knowledge_base.switch_documents_total, knowledge_base.switch_documents_done = _counts(model)
        knowledge_base.save()
        transaction.on_commit(lambda: enqueue_for(tenant, knowledge_base_reembed_task))
        transaction.on_commit(lambda: index_changed(tenant))
    audit_write(tenant, "knowledge_base.model_switch_started", user, None, f"{current} → {model}")
    return knowledge_base


def embedding_switch_cancel(*, tenant: Tenant, user: User) -> None:
    """Stop a running switch (admins only): the current model keeps serving and the vectors
    made for the next one are removed."""
    authorise_write(tenant, user, None, admin=True)
    knowledge_base_of(tenant=tenant)
    with tenant_context(tenant), transaction.atomic():
        knowledge_base = _locked()
        model = knowledge_base.next_embedding_model
        if not model:
            raise ValidationError("No model switch is running.")
        _stop(tenant, knowledge_base, error="")
    audit_write(tenant, "knowledge_base.model_switch_cancelled", user, None, model)


def reembed_step(*, tenant: Tenant, budget_s: float) -> bool:
    """Re-embed ready documents that lack vectors of the next model for about `budget_s`, and
    switch models once none is left. True when nothing is left to do (switched, or no switch
    running); False when the caller should run another step. Raises GatewayError when the next
    model cannot embed (the caller retries or abandons the switch)."""
    deadline = time.monotonic() + budget_s
    with tenant_context(tenant):
        while True:
            knowledge_base = knowledge_base_of(tenant=tenant)
            target = knowledge_base.next_embedding_model
            if not target:
                return True
            document = _lacking(target).order_by("pk").first()
            if document is None:
                if _switch(tenant, target):
                    return True
                continue  # a document became ready meanwhile
            _reembed(tenant, document, knowledge_base.embedding_model, target)
            _record_progress(tenant, target)
            if time.monotonic() > deadline:
                return False


def embedding_switch_abandon(*, tenant: Tenant, model: str, reason: str) -> None:
    """The next model cannot embed (no key, refused input): stop the switch, keep serving the
    current model, and say why on the documents page."""
    knowledge_base_of(tenant=tenant)
    with tenant_context(tenant), transaction.atomic():
        knowledge_base = _locked()
        if knowledge_base.next_embedding_model != model:
            return
        _stop(tenant, knowledge_base, error=f"Switching to {model} stopped: {reason}"[:300])
    logger.warning("embedding model switch abandoned", extra={"model": model})


def index_prune(*, tenant: Tenant) -> int:
    """Remove vectors of models the index no longer uses. Returns how many chunks went."""
    with tenant_context(tenant), transaction.atomic():
        models = _locked().index_models
        deleted, _ = Chunk.objects.exclude(embedding_model__in=models).delete()
    return deleted


def _locked() -> KnowledgeBase:
    return KnowledgeBase.objects.select_for_update().get(pk=KnowledgeBase.SINGLETON_PK)


def _lacking(model: str):
    """Ready documents without vectors of `model`."""
    having = Chunk.objects.filter(embedding_model=model).values("document_id")
    return Document.objects.filter(status=Document.Status.READY).exclude(pk__in=having)


def _counts(model: str) -> tuple[int, int]:
    total = Document.objects.filter(status=Document.Status.READY).count()
    return total, total - _lacking(model).count()


def _record_progress(tenant: Tenant, model: str) -> None:
    total, done = _counts(model)
    KnowledgeBase.objects.filter(next_embedding_model=model).update(
        switch_documents_total=total, switch_documents_done=done
    )
    index_changed(tenant)


def _reembed(tenant: Tenant, document: Document, serving: str, target: str) -> None:
    """Give `document` vectors of `target`, copying its serving chunks (same text and
    positions, no extraction). Skipped if the document changed meanwhile."""
    source = list(
        Chunk.objects.filter(document=document, embedding_model=serving)
        .defer("embedding")
        .order_by("index")
    )
    if not source:  # ready without serving vectors: index it from its file again
        document_ingest(tenant=tenant, document_id=document.pk)
        return
    vectors = embed_texts(tenant, document, [c.text for c in source], target, progress=False)
    with transaction.atomic():
        if _locked().next_embedding_model != target:
            return  # cancelled or switched meanwhile
        if not Document.objects.select_for_update().filter(pk=document.pk).exists():
            return  # deleted meanwhile
        current = Chunk.objects.filter(document_id=document.pk, embedding_model=serving)
        if set(current.values_list("pk", flat=True)) != {c.pk for c in source}:
            return  # re-indexed meanwhile: its new chunks were stored for both models
        Chunk.objects.filter(document_id=document.pk, embedding_model=target).delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    document_id=document.pk,
                    index=c.index,
                    text=c.text,
                    token_count=c.token_count,
                    page=c.page,
                    heading_path=c.heading_path,
                    start=c.start,
                    end=c.end,
                    flags=c.flags,
                    text_hash=c.text_hash,
                    embedding=vector,
                    embedding_model=target,
                    embedding_dimensions=len(vector),
                )
                for c, vector in zip(source, vectors, strict=True)
            ],
            batch_size=500,
        )


def _switch(tenant: Tenant, target: str) -> bool:
    """Make `target` the serving model if every ready document has its vectors."""
    from retrieval.tasks import index_prune_task

    with transaction.atomic():
        knowledge_base = _locked()
        if knowledge_base.next_embedding_model != target:
            return True  # cancelled meanwhile: nothing left to do
        if _lacking(target).exists():
            return False
        previous = knowledge_base.embedding_model
        knowledge_base.embedding_model = target
        knowledge_base.next_embedding_model = ""
        knowledge_base.switch_documents_done = knowledge_base.switch_documents_total
        knowledge_base.save()
        Document.objects.filter(status=Document.Status.READY).update(embedding_model=target)
        transaction.on_commit(
            lambda: enqueue_for(tenant, index_prune_task, countdown=PRUNE_DELAY_S)
        )
        transaction.on_commit(lambda: index_changed(tenant))
    audit_write(tenant, "knowledge_base.model_switched", None, None, f"{previous} → {target}")
    return True


def _stop(tenant: Tenant, knowledge_base: KnowledgeBase, *, error: str) -> None:
    """In a transaction holding the knowledge base's lock."""
    from retrieval.tasks import index_prune_task

    knowledge_base.next_embedding_model = ""
    knowledge_base.switch_error = error
    knowledge_base.save()
    transaction.on_commit(lambda: enqueue_for(tenant, index_prune_task))
    transaction.on_commit(lambda: index_changed(tenant))
