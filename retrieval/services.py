"""Writes for the knowledge base: upload, ingestion (extract -> chunk -> embed -> store), delete."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django_tenants.utils import tenant_context

from ai.gateway import Caller, GatewayError, embed_sync
from ai.gateway.routing import tier_of
from retrieval.events import document_changed
from retrieval.models import (
    EMBEDDING_DIMENSIONS,
    MAX_TAGS,
    TAG_MAX_CHARS,
    Chunk,
    Document,
    KnowledgeBase,
)
from retrieval.selectors import knowledge_base_of
from saas.audit.services import audit_record
from saas.lib.tasks import enqueue_for
from saas.webhooks.services import webhook_emit
from tenants.models import APIKey, Tenant, User
from tenants.selectors import membership_for

logger = logging.getLogger(__name__)

EMBED_BATCH = 32
Progress = Callable[[int], None]


def _limits(tenant: Tenant) -> dict[str, int]:
    return settings.RETRIEVAL_LIMITS[tier_of(tenant)]


def authorise_write(
    tenant: Tenant, user: User | None, api_key: APIKey | None, *, admin: bool = False
) -> str:
    """Who is writing (for the record): a member (an admin if `admin`) or a key of this tenant
    with the documents:write scope. Raises PermissionDenied otherwise."""
    if api_key is not None:
        if api_key.tenant_id != tenant.pk or APIKey.Scope.DOCUMENTS_WRITE not in api_key.scopes:
            raise PermissionDenied("This API key may not change documents.")
        return f"API key “{api_key.name}”"
    membership = membership_for(tenant=tenant, user=user) if user else None
    if membership is None or (admin and not membership.is_admin):
        raise PermissionDenied(
            "Only admins and owners delete documents." if admin else "Members only."
        )
    return user.email


def audit_write(
    tenant: Tenant, action: str, user: User | None, api_key: APIKey | None, target: str
):
    data = {"api_key": api_key.key_id} if api_key else None
    audit_record(tenant=tenant, action=action, actor=user, target=target, data=data)


def document_upload(
    *,
    tenant: Tenant,
    filename: str,
    data: bytes,
    user: User | None = None,
    api_key: APIKey | None = None,
    enqueue: bool = True,
) -> Document:
    """Store an uploaded file (from a member or an API key) and queue its ingestion (unless
    the caller ingests it itself). Raises ValidationError (a message for the person
    uploading) for an empty, too large, unsupported or duplicate file."""
    from retrieval.extract import UnsupportedDocument, detect_type, sanitise_filename
    from retrieval.tasks import document_ingest_task

    uploaded_by = authorise_write(tenant, user, api_key)
    name = sanitise_filename(filename)
    limits = _limits(tenant)
    if not data:
        raise ValidationError(f"{name} is empty.")
    if len(data) > limits["max_bytes"]:
        raise ValidationError(
            f"{name} is {len(data) // (1024 * 1024)} MB; your plan accepts files up to "
            f"{limits['max_bytes'] // (1024 * 1024)} MB."
        )
    try:
        kind = detect_type(data, name)
    except UnsupportedDocument as error:
        raise ValidationError(f"{name}: {error}") from None
    content_hash = hashlib.sha256(data).hexdigest()
    with tenant_context(tenant):
        existing = Document.objects.filter(content_hash=content_hash).first()
        if existing is not None:
            raise ValidationError(f"{name} is already in the knowledge base as “{existing.title}”.")
        if Document.objects.count() >= limits["max_documents"]:
            raise ValidationError(
                f"Your plan holds up to {limits['max_documents']} documents. Delete some first."
            )
        with transaction.atomic():
            document = Document(
                title=name.rsplit(".", 1)[0][:300] or name, filename=name, kind=kind,
                content_hash=content_hash, size_bytes=len(data), uploaded_by_email=uploaded_by,
            )  # fmt: skip
            document.file.save(name, ContentFile(data), save=False)
            try:
                with transaction.atomic():
                    document.save()
            except IntegrityError:  # the same file uploaded twice at once: the other won
                document.file.storage.delete(document.file.name)
                raise ValidationError(f"{name} is already in the knowledge base.") from None
            transaction.on_commit(
                lambda: document_changed(tenant, document.pk, status="queued", progress=0)
            )
            if enqueue:
                transaction.on_commit(
                    lambda: enqueue_for(tenant, document_ingest_task, document_id=document.pk)
                )
    audit_write(tenant, "document.uploaded", user, api_key, name)
    return document


def _set_progress(tenant: Tenant, document_id: int, progress: int) -> None:
    Document.objects.filter(pk=document_id).update(progress=progress)
    document_changed(tenant, document_id, status=Document.Status.PROCESSING, progress=progress)


def document_ingest(*, tenant: Tenant, document_id: int) -> Document | None:
    """Extract, chunk, embed and store one document (in `tenant`'s schema). Idempotent: running
    it again (e.g. after a worker died mid-way) replaces the chunks, never duplicates them.
    Returns None if the document is gone."""
    from retrieval.chunking import chunk
    from retrieval.extract import UnsupportedDocument, extract

    with tenant_context(tenant):
        document = Document.objects.filter(pk=document_id).first()
        if document is None:
            return None
        Document.objects.filter(pk=document_id).update(
            status=Document.Status.PROCESSING, progress=5, error="", warnings=[]
        )
        document_changed(tenant, document_id, status=Document.Status.PROCESSING, progress=5)
        try:
            with document.file.open("rb") as handle:
                data = handle.read()
            extracted = extract(data, document.filename, max_bytes=_limits(tenant)["max_bytes"])
            _set_progress(tenant, document_id, 15)
            chunks = chunk(
                extracted,
                max_tokens=settings.RETRIEVAL_CHUNK_TOKENS,
                overlap=settings.RETRIEVAL_CHUNK_OVERLAP,
            )
            if not chunks:
                raise UnsupportedDocument("No text was found in this document.")
            _set_progress(tenant, document_id, 30)
            return _store(tenant, document, chunks, extracted)
        except (UnsupportedDocument, GatewayError, OSError) as error:
            return document_mark_failed(tenant, document_id, str(error))


# An index model switch that starts or ends while a document is embedded makes its write
# embed once more for the new set of models; more rounds than this means someone is flipping
# the model back and forth, and the document fails with a reason to retry.
STORE_ROUNDS = 3


def _store(tenant: Tenant, document: Document, chunks: list, extracted) -> Document:
    """Embed the chunks with every model of the index (the serving one and, during a switch,
    the next one) and replace the document's chunks with them. The write holds the knowledge
    base's row lock, so it cannot interleave with a switch: the chunks stored are always for
    the models of the index at that moment."""
    from retrieval.injection import injection_flags

    texts = [c.text for c in chunks]
    vectors: dict[str, list] = {}
    flags = [injection_flags(piece.text) for piece in chunks]
    for _ in range(STORE_ROUNDS):
        for model in knowledge_base_of(tenant=tenant).index_models:
            if model not in vectors:
                vectors[model] = embed_texts(tenant, document, texts, model)
        with transaction.atomic():
            models = (
                KnowledgeBase.objects.select_for_update()
                .get(pk=KnowledgeBase.SINGLETON_PK)
                .index_models
            )
            if not set(models) <= vectors.keys():
                continue  # the index changed while embedding: embed for the new model too
            rows = [
                Chunk(
                    document_id=document.pk, index=piece.index, text=piece.text,
                    token_count=piece.token_count, page=piece.page,
                    heading_path=list(piece.heading_path), start=piece.start, end=piece.end,
                    flags=piece_flags, text_hash=text_hash(piece.text), embedding=vector,
                    embedding_model=model, embedding_dimensions=len(vector),
                )
                for model in models
                for piece, piece_flags, vector in zip(chunks, flags, vectors[model], strict=True)
            ]  # fmt: skip
            Chunk.objects.filter(document_id=document.pk).delete()
            Chunk.objects.bulk_create(rows, batch_size=500)
            title = extracted.title[:300] or document.title
            Document.objects.filter(pk=document.pk).update(
                status=Document.Status.READY, progress=100, chunk_count=len(chunks), title=title,
                flags=sorted({flag for piece_flags in flags for flag in piece_flags}),
                embedding_model=models[0], warnings=list(extracted.warnings),
            )  # fmt: skip
            webhook_emit(
                tenant=tenant, event_type="document.ready",
                data={"id": str(document.public_id), "title": title, "chunks": len(chunks)},
            )  # fmt: skip
        document_changed(tenant, document.pk, status=Document.Status.READY, progress=100)
        return Document.objects.get(pk=document.pk)
    raise GatewayError("The knowledge base's embedding model changed while indexing. Retry.")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def embed_texts(
    tenant: Tenant, document: Document, texts: list[str], model: str, *, progress: bool = True
) -> list:
    """Vectors of `model` for `texts` (in `tenant`'s schema): reused from the tenant's chunks
    with the same text and model (a re-upload, a repeated boilerplate paragraph), the rest
    embedded through the gateway in batches. A batch's request id is derived from its texts
    and model, so a retried ingestion meters each batch once."""
    hashes = {text: text_hash(text) for text in texts}  # one per distinct text
    known = dict(
        Chunk.objects.filter(text_hash__in=hashes.values(), embedding_model=model).values_list(
            "text_hash", "embedding"
        )
    )
    missing = [text for text, digest in hashes.items() if digest not in known]
    batches = [
        missing[start : start + EMBED_BATCH] for start in range(0, len(missing), EMBED_BATCH)
    ]
    for number, batch in enumerate(batches):
        batch_id = hashlib.sha256(
            "".join([model, *(hashes[t] for t in batch)]).encode()
        ).hexdigest()
        caller = Caller(tenant, "embed", f"ingest:{document.public_id}:{batch_id[:32]}")
        # Pinned: vectors of any other model (a fallback) would not belong in this index.
        result = embed_sync(
            caller=caller, texts=batch, model=model, dimensions=EMBEDDING_DIMENSIONS, pinned=True
        )
        known.update(zip((hashes[t] for t in batch), result.vectors, strict=True))
        if progress:
            _set_progress(tenant, document.pk, 30 + int(60 * (number + 1) / len(batches)))
    return [known[hashes[t]] for t in texts]


def document_mark_failed(tenant: Tenant, document_id: int, reason: str) -> None:
    """Failed, with a reason for people (in `tenant`'s schema)."""
    with transaction.atomic():
        found = Document.objects.filter(pk=document_id)
        public_id = found.values_list("public_id", flat=True).first()
        if public_id is None:
            return  # deleted meanwhile
        found.update(status=Document.Status.FAILED, error=reason[:300], progress=0)
        webhook_emit(
            tenant=tenant, event_type="document.failed",
            data={"id": str(public_id), "error": reason[:300]},
        )  # fmt: skip
    document_changed(tenant, document_id, status=Document.Status.FAILED, progress=0)
    logger.info("document ingestion failed", extra={"document_id": document_id})


def document_delete(
    *, tenant: Tenant, document: Document, user: User | None = None, api_key: APIKey | None = None
) -> None:
    """Remove the document, its file, chunks and vectors, and every cached answer that could
    quote it (the tenant's exact and semantic caches), so no later answer cites it."""
    from asgiref.sync import async_to_sync

    from ai.gateway.cache import cache_clear_tenant
    from ai.gateway.semantic import semantic_forget

    authorise_write(tenant, user, api_key, admin=True)
    with tenant_context(tenant):
        title, document_id = document.title, document.pk
        storage, path = document.file.storage, document.file.name
        with transaction.atomic():
            document.delete()  # chunks and vectors go with it (cascade)
            transaction.on_commit(lambda: storage.delete(path))
    semantic_forget(tenant)
    async_to_sync(cache_clear_tenant)(tenant.schema_name)
    transaction.on_commit(lambda: document_changed(tenant, document_id, status="deleted"))
    audit_write(tenant, "document.deleted", user, api_key, title)


def tags_parse(raw: str) -> list[str]:
    """ "Policies, HR , policies" -> ["hr", "policies"]: lower case, single spaces, sorted,
    without duplicates. Raises ValidationError for too many or too long tags."""
    tags = sorted({" ".join(tag.split()).lower() for tag in raw.split(",")} - {""})
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"A document takes at most {MAX_TAGS} tags.")
    too_long = [tag for tag in tags if len(tag) > TAG_MAX_CHARS]
    if too_long:
        raise ValidationError(f"Tags are at most {TAG_MAX_CHARS} characters: {too_long[0][:60]}…")
    return tags


def document_tag(*, tenant: Tenant, user: User, document: Document, tags: list[str]) -> None:
    """Replace the document's tags (any member may tag; search can be limited to tags)."""
    authorise_write(tenant, user, None)
    with tenant_context(tenant):
        Document.objects.filter(pk=document.pk).update(tags=tags)
    document.tags = tags
    audit_write(
        tenant, "document.tagged", user, None, f"{document.title}: {', '.join(tags) or '(none)'}"
    )
