"""Reads for the knowledge base, including hybrid search."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.core.paginator import Page, Paginator
from django.db import connection, transaction
from django.db.models import Count, F, Min, Q, QuerySet, Window
from django.http import Http404
from django_tenants.utils import tenant_context
from pgvector.django import CosineDistance

from ai.gateway import Caller, embed_sync
from retrieval.models import EMBEDDING_DIMENSIONS, Chunk, Document, KnowledgeBase
from tenants.models import Tenant

RRF_K = 60  # the usual Reciprocal Rank Fusion constant
CANDIDATES_PER_RESULT = 4


def documents_page(*, tenant: Tenant, page: str | int | None, per_page: int = 50) -> Page:
    """One page of the tenant's documents, newest first (an out-of-range page gives the last)."""
    with tenant_context(tenant):
        result = Paginator(Document.objects.all(), per_page).get_page(page)
        result.object_list = list(result.object_list)  # read while in the tenant's schema
        return result


def document_for(*, tenant: Tenant, document_id: int) -> Document:
    """A document of `tenant`; another tenant's id answers exactly like a missing one."""
    with tenant_context(tenant):
        document = Document.objects.filter(pk=document_id).first()
    if document is None:
        raise Http404("No such document.")
    return document


def document_by_public_id(*, tenant: Tenant, public_id: uuid.UUID) -> Document:
    """For the API (which names documents by their public id); 404 like `document_for`."""
    with tenant_context(tenant):
        document = Document.objects.filter(public_id=public_id).first()
    if document is None:
        raise Http404("No such document.")
    return document


def document_pks(*, tenant: Tenant, public_ids: list[uuid.UUID]) -> list[int]:
    """The tenant's documents among `public_ids` (others' ids are simply not there)."""
    with tenant_context(tenant):
        return list(Document.objects.filter(public_id__in=public_ids).values_list("pk", flat=True))


def documents_by_public_id(
    *, tenant: Tenant, public_ids: list[uuid.UUID]
) -> dict[uuid.UUID, Document]:
    """The tenant's documents among `public_ids`, by public id, with their title and status
    only (others' ids are simply not there)."""
    with tenant_context(tenant):
        found = Document.objects.filter(public_id__in=public_ids).only(
            "public_id", "title", "status"
        )
        return {document.public_id: document for document in found}


@dataclass(frozen=True)
class DocumentText:
    text: str
    truncated: bool  # the document has more text than was read


def document_texts(
    *, tenant: Tenant, document_ids: list[int], max_chars: int
) -> dict[int, DocumentText]:
    """The text of each document (by pk) rebuilt from its stored chunks, at most `max_chars`
    characters: the chunks in order, the overlap between neighbours once, one embedding
    model's copy (during a model switch a chunk is stored once per model: the serving model's
    copy, or, for a document without one, the first model's). A document without chunks is
    left out. Reads only about `max_chars` of text per document, however long it is."""
    with tenant_context(tenant):
        serving = knowledge_base_of(tenant=tenant).embedding_model
        chosen: dict[int, str] = {}
        copies = (
            Chunk.objects.filter(document_id__in=document_ids)
            .values_list("document_id", "embedding_model")
            .distinct()
            .order_by("document_id", "embedding_model")
        )
        for document_id, model in copies:
            if model == serving or document_id not in chosen:
                chosen[document_id] = model
        if not chosen:
            return {}
        wanted = Q()
        for model in set(chosen.values()):
            documents = [pk for pk, chosen_model in chosen.items() if chosen_model == model]
            wanted |= Q(embedding_model=model, document_id__in=documents)
        by_document = [F("document_id")]
        rows = (
            Chunk.objects.filter(wanted)
            .annotate(
                first_start=Window(Min("start"), partition_by=by_document),
                chunks=Window(Count("pk"), partition_by=by_document),
            )
            # Text rebuilt from chunks is never longer than the span they cover, so chunks
            # starting past the budget cannot be needed (only counted, for `truncated`).
            .filter(start__lte=F("first_start") + max_chars)
            .order_by("document_id", "index")
            .values_list("document_id", "start", "end", "text", "chunks")
        )
        texts: dict[int, DocumentText] = {}
        for document_id, group in groupby(rows, key=itemgetter(0)):
            read = list(group)
            pieces = [(start, end, text) for _, start, end, text, _ in read]
            texts[document_id] = _joined(pieces, max_chars, more=len(read) < read[0][4])
        return texts


def _joined(pieces: list[tuple[int, int, str]], max_chars: int, *, more: bool) -> DocumentText:
    """Chunks (start, end, text) in order, as one text: a chunk overlapping the previous one
    adds only what follows it (`text` is the extracted text's [start:end]); a gap between two
    chunks (whitespace) becomes a space or, for more than one character, a blank line. Cut
    to `max_chars` (at a word boundary near it, if any)."""
    parts: list[str] = []
    covered: int | None = None
    for start, end, text in pieces:
        if covered is not None:
            if end <= covered:
                continue
            gap = start - covered
            if gap < 0 and len(text) == end - start:
                text = text[-gap:]
            elif gap:
                parts.append(" " if gap == 1 else "\n\n")
        parts.append(text)
        covered = end
    joined = "".join(parts)
    if len(joined) <= max_chars:
        return DocumentText(joined, more)
    cut = joined[:max_chars]
    near = max_chars - 200
    boundary = max(cut.rfind(" ", near), cut.rfind("\n", near))
    return DocumentText(cut[:boundary] if boundary > 0 else cut, True)


def documents_for_api(*, tenant: Tenant) -> QuerySet[Document]:
    """Lazily evaluated: the API runs with the key's tenant schema already active."""
    return Document.objects.all()


def document_chunks(*, tenant: Tenant, document: Document) -> list[Chunk]:
    """The chunks search uses (during a model switch, not the copies for the next model)."""
    with tenant_context(tenant):
        serving = knowledge_base_of(tenant=tenant).embedding_model
        chunks = document.chunks.filter(embedding_model=serving)
        return list(chunks.defer("embedding").order_by("index"))


def knowledge_base_of(*, tenant: Tenant) -> KnowledgeBase:
    """The tenant's knowledge base settings (created with the defaults on first use)."""
    with tenant_context(tenant):
        knowledge_base, _ = KnowledgeBase.objects.get_or_create(pk=KnowledgeBase.SINGLETON_PK)
        return knowledge_base


def embedding_models_for(*, tenant: Tenant) -> list[str]:
    """The embedding models the tenant may index its knowledge base with: the ones it may use
    that give vectors of the index's size (natively, or shortened on request by providers
    whose API takes `dimensions`)."""
    from ai.gateway.config import config_snapshot
    from ai.gateway.routing import tenant_credentials, usable_models

    snapshot = config_snapshot()
    models = usable_models(
        snapshot=snapshot, tenant=tenant, kind="embedding",
        byok=tenant_credentials(tenant, snapshot.generation),
    )  # fmt: skip
    return [
        model.key
        for model in models
        if model.dimensions == EMBEDDING_DIMENSIONS
        or (
            model.provider in SHORTENING_PROVIDERS
            and (model.dimensions or 0) > EMBEDDING_DIMENSIONS
        )
    ]


# Providers whose embeddings API shortens vectors to a requested size (OpenAI's `dimensions`).
SHORTENING_PROVIDERS = frozenset({"openai", "openai_compatible"})


@dataclass
class Hit:
    chunk_id: int
    document_id: int
    document_public_id: uuid.UUID
    title: str
    text: str
    page: int | None
    heading_path: list[str]
    index: int
    similarity: float
    score: float
    flags: list[str]


def knowledge_search(
    *,
    tenant: Tenant,
    query: str,
    k: int = 5,
    document_ids: list[int] | None = None,
    tags: list[str] | None = None,
    user_id: int | None = None,
    api_key_id: int | None = None,
) -> list[Hit]:
    """The best `k` chunks for `query`: vector kNN and full-text results fused with Reciprocal
    Rank Fusion, adjacent chunks of one document collapsed, and nothing below the relevance
    floor (a weak vector match that shares no word with the query). Optionally only from
    `document_ids` and/or documents with any of `tags`. Empty when nothing is relevant, so an
    answer can say so instead of inventing one."""
    query = query.strip()
    if not query:
        return []
    serving = knowledge_base_of(tenant=tenant).embedding_model
    vector = embed_sync(
        caller=Caller(
            tenant, "embed", f"search:{uuid.uuid4().hex}", user_id=user_id, api_key_id=api_key_id
        ),
        texts=[query],
        model=serving,
        dimensions=EMBEDDING_DIMENSIONS,
        pinned=True,
    ).vectors[0]
    limit = k * CANDIDATES_PER_RESULT
    with tenant_context(tenant), transaction.atomic():
        with connection.cursor() as cursor:
            # pgvector's default candidate list (40) misses ~6% of the top 10 at 100k chunks.
            cursor.execute(
                "SELECT set_config('hnsw.ef_search', %s, true)",
                [str(settings.RETRIEVAL_HNSW_EF_SEARCH)],
            )
        chunks = Chunk.objects.filter(
            document__status=Document.Status.READY, embedding_model=serving
        )
        if document_ids:
            chunks = chunks.filter(document_id__in=document_ids)
        if tags:
            chunks = chunks.filter(document__tags__overlap=tags)
        if document_ids or tags:
            # A selective filter must still return k results: let HNSW keep scanning.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        by_vector = list(
            chunks.annotate(distance=CosineDistance("embedding", vector))
            .order_by("distance")
            .select_related("document")
            .defer("embedding")[:limit]
        )
        # An iterative scan returns rows only roughly in order (relaxed_order); the ranks fused
        # below must be exact (pgvector's advice: re-sort what the scan returned).
        by_vector.sort(key=lambda chunk: chunk.distance)
        text_query = SearchQuery(query, search_type="websearch", config="english")
        by_text = list(
            chunks.filter(search_vector=text_query)
            .annotate(rank=SearchRank("search_vector", text_query))
            .order_by("-rank")
            .select_related("document")
            .defer("embedding")[:limit]
        )
    return _fuse(by_vector, by_text, k, settings.RETRIEVAL_MIN_SIMILARITY)


def _fuse(by_vector: list[Chunk], by_text: list[Chunk], k: int, floor: float) -> list[Hit]:
    scores: dict[int, float] = {}
    chunks: dict[int, Chunk] = {}
    text_matches = {c.pk for c in by_text}
    for ranking in (by_vector, by_text):
        for rank, item in enumerate(ranking, start=1):
            scores[item.pk] = scores.get(item.pk, 0.0) + 1 / (RRF_K + rank)
            chunks[item.pk] = item
    similarity = {c.pk: 1 - c.distance for c in by_vector}
    ranked = sorted(scores, key=scores.__getitem__, reverse=True)
    hits: list[Hit] = []
    taken: set[tuple[int, int]] = set()
    for pk in ranked:
        item = chunks[pk]
        sim = similarity.get(pk, 0.0)
        if sim < floor and pk not in text_matches:
            continue  # below the relevance floor
        # Overlapping neighbours say the same thing twice: keep the better-ranked one.
        if {(item.document_id, item.index - 1), (item.document_id, item.index + 1)} & taken:
            continue
        taken.add((item.document_id, item.index))
        hits.append(
            Hit(
                chunk_id=pk, document_id=item.document_id,
                document_public_id=item.document.public_id, title=item.document.title,
                text=item.text, page=item.page, heading_path=list(item.heading_path),
                index=item.index, similarity=round(sim, 4), score=round(scores[pk], 6),
                flags=list(item.flags),
            )
        )  # fmt: skip
        if len(hits) == k:
            break
    return hits


def tags_of(*, tenant: Tenant) -> list[str]:
    """Every tag in use in the tenant's knowledge base, sorted."""
    with tenant_context(tenant), connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT unnest(tags) AS tag FROM retrieval_document ORDER BY tag")
        return [tag for (tag,) in cursor.fetchall()]
