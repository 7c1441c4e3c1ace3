"""Knowledge-base search at scale: one tenant with 100,000 chunks of 384 dimensions.

Measured in one run, in the tenant's own `retrieval_chunk` table with the app's indexes:

- HNSW build: the chunks are COPYed in with the HNSW and full-text (GIN) indexes dropped, then
  both indexes are re-created from their own definitions (`pg_get_indexdef`: cosine, m=16,
  ef_construction=64) and timed, with the server's parallel maintenance workers. A bulk build
  is what a restore or a re-index does; the app's ingestion inserts into the existing index,
  which the ingestion figure below measures. `maintenance_work_mem` is raised to 1 GB for the
  build session so the graph fits in memory (`hnsw_graph_fit_ratio` is 0 if pgvector says it
  did not). Parallel builds are not deterministic: recall moves by ~0.02 from run to run.
- kNN through the SQL `knowledge_search` runs (its queryset, compiled by Django: ready
  documents, the serving embedding model, ORDER BY cosine distance, LIMIT 10; client-side
  binding as Django's), each query a transaction with its `SET LOCAL`s, from 1 client and from
  4 concurrent clients (processes with their own connections, on the same 2 cores as the
  server). Recall@10 is against exact search (NumPy over the same float32 vectors, spot-checked
  against a sequential scan in PostgreSQL). Several `hnsw.ef_search` values are measured,
  interleaved query by query so drift in the machine's load hits them alike; the headline
  figures are for the value the app sets (`RETRIEVAL_HNSW_EF_SEARCH`).
- Filtered kNN: the same SQL restricted to the 1% of documents that carry a tag, with the
  app's `SET LOCAL hnsw.iterative_scan = relaxed_order` and without it: the share of queries
  that get all k rows, and recall against exact search within the filter. Both for the plan
  PostgreSQL picks (`filtered_*`) and for the HNSW path (`filtered_hnsw_*`, sorting disabled),
  which is the plan for a less selective filter.
- Ingestion: `document_ingest` (extract, chunk, embed with the local MiniLM embedder through
  the gateway, store into the 100k-chunk index) on a generated multi-section Markdown document
  of a few hundred chunks, end to end; chunks/s and the share of time spent in `embed_texts`.
- End to end: `knowledge_search` itself (query embedding, vector and full-text search, fusion)
  at one client, for context.

The vectors. Embedding 100k real chunks with the local embedder would take over an hour here,
and uniform random vectors are the unrealistically hard case for HNSW (no cluster structure,
full intrinsic dimension). So the vectors are derived from real MiniLM embeddings: 3,000
passages of English technical prose (docstrings of Django and the Python standard library,
present wherever this runs) are embedded once; each of 1,000 documents is about one topic, a
passage and its 3 nearest passages; each of its 100 chunks is a random convex mix of those 4
(Dirichlet weights) plus isotropic Gaussian noise, re-normalised (cosine ~0.86 to the mix
without noise), so chunks of one document are near but not identical, as chunks of a real
document are. Queries are held out: 200 more chunks drawn the same way and not stored (the
goals apply to these), and 200 real passage embeddings that are not anchors (`passage_*`:
like a real question, whose nearest chunks are less similar and nearly tied; reported for
comparison). The mean similarity of the exact top 10 is reported so the difficulty can be
judged.

Goals (issue): recall@10 >= 0.95 with p95 <= 10 ms at 4 concurrent clients (anchor: a managed
pgvector vendor's 2-vCPU figure, recall 0.93 at p95 5.9 ms); every 1%-selective filtered query
returns k rows. Runs only on `make bench` (about 3 minutes on 2 cores), never in CI."""

from __future__ import annotations

import ast
import enum
import hashlib
import os
import queue
import random
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import goal, percentile, use_scratch_database, use_scratch_redis, write_result

NAME = "retrieval"
CHUNKS = int(os.environ.get("BENCH_RETRIEVAL_CHUNKS", "100000"))
DOCUMENTS = int(os.environ.get("BENCH_RETRIEVAL_DOCUMENTS", "1000"))
ANCHORS = int(os.environ.get("BENCH_RETRIEVAL_ANCHORS", "3000"))
QUERIES = int(os.environ.get("BENCH_RETRIEVAL_QUERIES", "200"))
INGEST_WORDS = int(os.environ.get("BENCH_RETRIEVAL_INGEST_WORDS", "30000"))
EF_SEARCH = [int(v) for v in os.environ.get("BENCH_RETRIEVAL_EF", "40,64,80,100,200").split(",")]
CLIENTS = 4
K = 10
DIMENSIONS = 384
TOPIC_ANCHORS = 4  # a document's passage and its 3 nearest
NOISE = 0.5  # Gaussian noise norm, before re-normalising (a mix of anchors has norm ~0.84)
TAG = "rare"
TAGGED_DOCUMENTS = max(1, DOCUMENTS // 100)  # 1% of documents, so 1% of chunks
MAINTENANCE_WORK_MEM = "1GB"
SEARCH_CALLS = 50
SEED = 20261


# --- data ----------------------------------------------------------------------------------------


def passages() -> list[str]:
    """Paragraphs of 12-80 words from the docstrings of Django and the standard library: real
    English technical prose, present wherever this runs, in a deterministic order."""
    import django

    roots = [Path(django.__file__).parent, Path(os.__file__).parent]
    skip = {"test", "tests", "site-packages", "idlelib", "lib2to3"}
    seen: set[str] = set()
    found: list[str] = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if skip & set(path.relative_to(root).parts):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if not isinstance(
                    node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
                ):
                    continue
                for paragraph in re.split(r"\n\s*\n", ast.get_docstring(node) or ""):
                    text = " ".join(paragraph.split())
                    if 12 <= len(text.split()) <= 80 and text not in seen and text[0].isalpha():
                        seen.add(text)
                        found.append(text)
    return found


def _unit(rows):
    import numpy as np

    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def synthesise(anchors, rng, *, documents: int, per_document: int, held_out: int):
    """Chunk vectors around real passage embeddings (see the module docstring).

    Returns (vectors, document of each vector, anchor of each vector's largest weight, queries):
    `documents * per_document` stored vectors, then `held_out` query vectors from random
    documents, drawn the same way."""
    import numpy as np

    similarity = anchors @ anchors.T
    seeds = rng.choice(len(anchors), documents, replace=False)
    topics = np.argsort(-similarity[seeds], axis=1)[:, :TOPIC_ANCHORS]  # seed first

    def draw(topic, count):
        weights = rng.dirichlet([0.5] * TOPIC_ANCHORS, size=count)
        mixed = weights @ anchors[topic]
        noise = rng.standard_normal((count, anchors.shape[1])) / np.sqrt(anchors.shape[1])
        return _unit(mixed + NOISE * noise), topic[weights.argmax(axis=1)]

    vectors = np.empty((documents * per_document, anchors.shape[1]), dtype=np.float32)
    owner = np.repeat(np.arange(documents), per_document)
    main_anchor = np.empty(documents * per_document, dtype=np.int64)
    for document in range(documents):
        rows = slice(document * per_document, (document + 1) * per_document)
        vectors[rows], main_anchor[rows] = draw(topics[document], per_document)
    queries = np.vstack([draw(topics[d], 1)[0] for d in rng.integers(0, documents, held_out)])
    return vectors, owner, main_anchor, queries


def exact_top_k(vectors, queries, k: int = K):
    """Row numbers of the k most cosine-similar vectors (unit rows: dot product), per query."""
    import numpy as np

    scores = queries @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(scores, top, axis=1)


def literal(vector) -> str:
    """pgvector's text format; 9 significant digits give the float32 back exactly."""
    return "[" + (_FORMAT % tuple(vector.tolist())) + "]"


_FORMAT = ",".join(["%.9g"] * DIMENSIONS)


def markdown_document(texts: list[str], words: int) -> bytes:
    """A Markdown handbook of about `words` words: chapters, sections, paragraphs of prose."""
    lines = ["# Operations handbook", ""]
    used = chapter = 0
    pool = iter(texts)
    while used < words:
        chapter += 1
        lines += [f"## Chapter {chapter}", ""]
        for section in range(1, 5):
            lines += [f"### Section {chapter}.{section}", ""]
            for _ in range(3):
                paragraph = " ".join(next(pool) for _ in range(3))
                used += len(paragraph.split())
                lines += [paragraph, ""]
    return "\n".join(lines).encode()


# --- database ------------------------------------------------------------------------------------


def _dsn() -> str:
    return os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)


def _connect(schema: str):
    import psycopg

    # Client-side binding, as Django's psycopg backend does by default.
    conn = psycopg.connect(_dsn(), autocommit=True, cursor_factory=psycopg.ClientCursor)
    conn.execute(f'SET search_path TO "{schema}", public')
    return conn


def _load(conn, vectors, owner, main_anchor, texts, document_ids) -> dict[str, float]:
    """COPY the chunks in with the HNSW and GIN indexes dropped, then re-create both (timed)."""
    definitions = dict(
        conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname IN ('chunk_embedding_hnsw', 'chunk_search_gin')"
        ).fetchall()
    )
    assert len(definitions) == 2, definitions
    for name in definitions:
        conn.execute(f"DROP INDEX {name}")
    hashes = {a: hashlib.sha256(texts[a].encode()).hexdigest() for a in set(main_anchor.tolist())}
    per_document: dict[int, int] = {}
    started = time.perf_counter()
    columns = (
        'id, document_id, index, text, token_count, page, heading_path, start, "end", flags, '
        "text_hash, embedding, embedding_model, embedding_dimensions"
    )
    with conn.cursor().copy(f"COPY retrieval_chunk ({columns}) FROM STDIN") as copy:
        for row, (vector, document, anchor) in enumerate(
            zip(vectors, owner.tolist(), main_anchor.tolist(), strict=True)
        ):
            position = per_document.get(document, 0)
            per_document[document] = position + 1
            text = texts[anchor]
            copy.write_row(
                (
                    row + 1, document_ids[document], position, text, len(text.split()) * 4 // 3,
                    None, "[]", 0, len(text), "[]", hashes[anchor], literal(vector),
                    "local-minilm", DIMENSIONS,
                )
            )  # fmt: skip
    copy_s = time.perf_counter() - started
    conn.execute(
        "SELECT setval(pg_get_serial_sequence('retrieval_chunk', 'id'), "
        "(SELECT max(id) FROM retrieval_chunk))"
    )
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    conn.execute(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
    workers = int(conn.execute("SHOW max_parallel_maintenance_workers").fetchone()[0])
    started = time.perf_counter()
    conn.execute(definitions["chunk_search_gin"])
    gin_s = time.perf_counter() - started
    started = time.perf_counter()
    conn.execute(definitions["chunk_embedding_hnsw"])
    hnsw_s = time.perf_counter() - started
    conn.execute("VACUUM ANALYZE retrieval_chunk")
    conn.execute("VACUUM ANALYZE retrieval_document")
    sizes = conn.execute(
        "SELECT pg_relation_size('chunk_embedding_hnsw'), pg_table_size('retrieval_chunk'), "
        "current_setting('shared_buffers')"
    ).fetchone()
    print(f"  HNSW build notices: {notices or 'none'}; shared_buffers {sizes[2]}")
    return {
        "copy_rows_per_s": len(vectors) / copy_s,
        "hnsw_build_s": hnsw_s,
        "hnsw_build_parallel_workers": float(workers),
        "hnsw_graph_fit_ratio": 0.0 if any("no longer fits" in n for n in notices) else 1.0,
        "gin_build_s": gin_s,
        "hnsw_index_mb": sizes[0] / 1_048_576,
        "chunk_table_mb": sizes[1] / 1_048_576,
    }


def app_query(tenant, *, tags: list[str] | None, limit: int = K) -> tuple[str, list, int]:
    """The SQL of `knowledge_search`'s vector step (kept in step with retrieval/selectors.py),
    with the position of the query vector among its parameters."""
    import numpy as np
    from django_tenants.utils import tenant_context
    from pgvector.django import CosineDistance

    from retrieval.models import Chunk, Document

    marker = np.full(DIMENSIONS, 0.5, dtype=np.float32)
    with tenant_context(tenant):
        chunks = Chunk.objects.filter(
            document__status=Document.Status.READY, embedding_model="local-minilm"
        )
        if tags:
            chunks = chunks.filter(document__tags__overlap=tags)
        queryset = (
            chunks.annotate(distance=CosineDistance("embedding", marker))
            .order_by("distance")
            .select_related("document")
            .defer("embedding")[:limit]
        )
        sql, params = queryset.query.sql_with_params()
    # Plain values (a choices member is an enum) to hand to client processes.
    plain = [[_plain(v) for v in p] if isinstance(p, list | tuple) else _plain(p) for p in params]
    position = [i for i, p in enumerate(plain) if "0.5,0.5" in str(p)]
    assert len(position) == 1, plain
    return sql, plain, position[0]


def _plain(value):
    return value.value if isinstance(value, enum.Enum) else value


def _client(schema, sql, params, position, setups, queries, offset, barrier, results) -> None:
    """One client process with its own connection: every query under every setup (the
    setups interleaved query by query, so drift in the machine's load hits them alike), each
    a transaction as in the app, with the setup's `SET LOCAL`s; client-side binding as
    Django's. Puts {(setup, query): (ids, ms)}."""
    conn = _connect(schema)
    order = list(range(offset, len(queries))) + list(range(offset))

    def once(setup, number):
        arguments = list(params)
        arguments[position] = queries[number]
        started = time.perf_counter()
        with conn.transaction():
            for statement in setup:
                conn.execute(statement)
            rows = conn.execute(sql, arguments).fetchall()
        return [row[0] for row in rows], (time.perf_counter() - started) * 1000

    for number in order[:10]:  # warm up the connection
        once(setups[0], number)
    barrier.wait()
    answers = {}
    for turn, number in enumerate(order):
        for step in range(len(setups)):
            which = (turn + step) % len(setups)
            answers[which, number] = once(setups[which], number)
    conn.close()
    results.put((offset, answers))


def run_clients(schema, query, setups, queries, clients):
    """`queries` under each of `setups` from `clients` processes at once. Returns, per setup,
    (the first client's ids by query number, every client's latencies in ms by query number)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(clients), context.Queue()
    sql, params, position = query
    step = len(queries) // clients
    processes = [
        context.Process(
            target=_client,
            args=(schema, sql, params, position, setups, queries, c * step, barrier, results),
        )
        for c in range(clients)
    ]
    for process in processes:
        process.start()
    collected = []
    while len(collected) < clients:
        try:
            collected.append(results.get(timeout=1))
        except queue.Empty:
            if any(process.exitcode for process in processes):
                for process in processes:
                    process.kill()
                raise RuntimeError("a client process failed (its traceback is above)") from None
    for process in processes:
        process.join()
    collected.sort(key=lambda item: item[0])
    measured = []
    for which in range(len(setups)):
        ids = {n: collected[0][1][which, n][0] for n in range(len(queries))}
        latencies = {n: [answers[which, n][1] for _, answers in collected] for n in ids}
        measured.append((ids, latencies))
    return measured


def _ms(latencies: dict[int, list[float]], numbers) -> list[float]:
    return [ms for number in numbers for ms in latencies[number]]


def recall(found: dict[int, list[int]], truth) -> float:
    return statistics.fmean(
        len(set(found[number]) & set(truth[number])) / len(truth[number])
        for number in range(len(truth))
    )


# --- the run -------------------------------------------------------------------------------------


def _setup(media_root: str):
    os.environ["MEDIA_ROOT"] = media_root
    import django

    django.setup()
    from django.core.management import call_command

    from tenants.services.accounts import user_ensure
    from tenants.services.provisioning import tenant_provision

    call_command("migrate_schemas", verbosity=0)
    owner = user_ensure(email="bench@example.test", password="bench-Password-123")
    return tenant_provision(slug="bench", name="Bench", owner=owner), owner


def _documents(tenant, rng, tagged) -> list[int]:
    from django_tenants.utils import tenant_context

    from retrieval.models import Document

    with tenant_context(tenant):
        created = Document.objects.bulk_create(
            Document(
                title=f"Document {n}", filename=f"document-{n}.md", kind="markdown",
                content_hash=hashlib.sha256(f"bench-{n}".encode()).hexdigest(),
                size_bytes=1, file=f"bench/document-{n}.md", status=Document.Status.READY,
                progress=100, chunk_count=CHUNKS // DOCUMENTS, embedding_model="local-minilm",
                tags=[TAG] if n in tagged else [],
            )
            for n in range(DOCUMENTS)
        )  # fmt: skip
    return [document.pk for document in created]


def _ingest(tenant, document) -> dict[str, float]:
    """`document_ingest` end to end, with the time spent in `embed_texts` (the gateway and
    the local embedder, for every batch) measured on the side."""
    from django_tenants.utils import tenant_context

    import retrieval.services as services
    from retrieval.models import Chunk

    embedding = []
    embed_texts = services.embed_texts

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return embed_texts(*args, **kwargs)
        finally:
            embedding.append(time.perf_counter() - started)

    services.embed_texts = timed
    try:
        started = time.perf_counter()
        services.document_ingest(tenant=tenant, document_id=document.pk)
        seconds = time.perf_counter() - started
    finally:
        services.embed_texts = embed_texts
    with tenant_context(tenant):
        stored = Chunk.objects.filter(document_id=document.pk).count()
    assert stored, "the ingestion stored no chunks"
    return {
        "ingest_chunks": float(stored),
        "ingest_s": seconds,
        "ingest_chunks_per_s": stored / seconds,
        "ingest_embed_share_ratio": sum(embedding) / seconds,
    }


def _search_end_to_end(tenant, questions: list[str]) -> dict[str, float]:
    from retrieval.selectors import knowledge_search

    knowledge_search(tenant=tenant, query=questions[0])  # warm up: embedder, gateway config
    latencies = []
    for question in questions:
        started = time.perf_counter()
        knowledge_search(tenant=tenant, query=question)
        latencies.append((time.perf_counter() - started) * 1000)
    return {
        "knowledge_search_p50_ms": percentile(latencies, 50),
        "knowledge_search_p95_ms": percentile(latencies, 95),
    }


def run() -> dict:
    use_scratch_database("atrium_bench_retrieval")
    use_scratch_redis(10)
    media_root = tempfile.mkdtemp(prefix="atrium-bench-media-")
    try:
        return _run(media_root)
    finally:
        shutil.rmtree(media_root, ignore_errors=True)


def _run(media_root: str) -> dict:
    import numpy as np

    began = time.perf_counter()
    tenant, owner = _setup(media_root)
    from django.conf import settings
    from django.db import connections

    from ai.embedding import get_embedder

    rng = np.random.default_rng(SEED)
    texts = passages()
    random.Random(SEED).shuffle(texts)
    anchor_texts = texts[:ANCHORS]
    passage_texts = texts[ANCHORS : ANCHORS + QUERIES]
    spare = texts[ANCHORS + QUERIES :]
    started = time.perf_counter()
    embedder = get_embedder()
    embedded = embedder.embed(anchor_texts + passage_texts, truncate=True)
    print(f"  embedded {len(embedded)} passages in {time.perf_counter() - started:.1f} s")
    anchors, passage_queries = embedded[:ANCHORS], embedded[ANCHORS:]
    vectors, owner_of, main_anchor, queries = synthesise(
        anchors, rng, documents=DOCUMENTS, per_document=CHUNKS // DOCUMENTS, held_out=QUERIES
    )
    tagged = set(rng.choice(DOCUMENTS, TAGGED_DOCUMENTS, replace=False).tolist())
    in_filter = np.flatnonzero(np.isin(owner_of, list(tagged)))

    # The handbook ingested at the end is uploaded first: the plan's document limit counts
    # documents, and the bench's 1,000 are far over it. Queued, it is not searched meanwhile.
    from retrieval.services import document_upload

    handbook = document_upload(
        tenant=tenant, filename="handbook.md", data=markdown_document(spare, INGEST_WORDS),
        user=owner, enqueue=False,
    )  # fmt: skip
    document_ids = _documents(tenant, rng, tagged)

    schema = tenant.schema_name
    with _connect(schema) as conn:
        metrics = {"chunks": float(len(vectors))}
        metrics |= _load(conn, vectors, owner_of, main_anchor, anchor_texts, document_ids)
    connections.close_all()

    # Exact answers: row r is chunk id r + 1.
    truth, truth_scores = exact_top_k(vectors, queries)
    passage_truth, passage_scores = exact_top_k(vectors, passage_queries)
    filtered_rows, _ = exact_top_k(vectors[in_filter], queries)
    filtered_truth = in_filter[filtered_rows]
    ids = lambda rows: [[int(r) + 1 for r in row] for row in rows]  # noqa: E731
    truth, passage_truth, filtered_truth = ids(truth), ids(passage_truth), ids(filtered_truth)
    metrics["query_top1_similarity"] = float(truth_scores.max(axis=1).mean())
    metrics["query_top10_similarity"] = float(truth_scores.mean())
    metrics["passage_query_top10_similarity"] = float(passage_scores.mean())

    query_literals = [literal(q) for q in queries]
    passage_literals = [literal(q) for q in passage_queries]
    plain = app_query(tenant, tags=None)
    filtered = app_query(tenant, tags=[TAG])
    iterative, no_sort = (
        "SET LOCAL hnsw.iterative_scan = relaxed_order",
        "SET LOCAL enable_sort = off",
    )
    filtered_variants = [
        ("filtered", filtered, [iterative]),  # what the app runs
        ("filtered_no_iterative", filtered, []),
        # Sorting made expensive: the planner walks the HNSW index and filters its rows.
        ("filtered_hnsw", filtered, [iterative, no_sort]),
        ("filtered_hnsw_no_iterative", filtered, [no_sort]),
    ]
    app_ef = settings.RETRIEVAL_HNSW_EF_SEARCH
    with _connect(schema) as conn:
        # The exact answers again, from a sequential scan in PostgreSQL, for a few queries.
        sql, params, position = plain
        agreement = []
        for number in range(5):
            with conn.transaction():
                conn.execute("SET LOCAL enable_indexscan = off")
                params[position] = query_literals[number]
                found = {row[0] for row in conn.execute(sql, params).fetchall()}
            agreement.append(len(found & set(truth[number])) / K)
        metrics["exact_numpy_vs_db_ratio"] = statistics.fmean(agreement)
        explain = []
        for label, query, setup in [("plain", plain, [])] + filtered_variants:
            sql, params, position = query
            params[position] = query_literals[0]
            with conn.transaction():
                for statement in setup:
                    conn.execute(statement)
                plan = [line for (line,) in conn.execute("EXPLAIN " + sql, params).fetchall()]
            metrics[f"{label}_plan_uses_hnsw"] = float(any("_hnsw" in line for line in plan))
            lines = [re.sub(r"'\[[^']*\]'", "'[...]'", line.strip()) for line in plan]
            explain.append(f"{label}: " + " / ".join(lines[:6]))
        print("  plans:", *explain, sep="\n    ")

    # Warm the index and table into memory, then every ef_search value at 1 client (the
    # generated and the passage queries) and at 4 clients (the generated ones).
    run_clients(schema, plain, [[]], query_literals, CLIENTS)
    values = sorted(set(EF_SEARCH) | {app_ef})
    setups = [[f"SET LOCAL hnsw.ef_search = {ef}"] for ef in values]
    generated, real = range(QUERIES), range(QUERIES, 2 * QUERIES)
    single = run_clients(schema, plain, setups, query_literals + passage_literals, 1)
    multiple = run_clients(schema, plain, setups, query_literals, CLIENTS)
    for ef, (found, c1), (_, c4) in zip(values, single, multiple, strict=True):
        c1, c4 = _ms(c1, generated), _ms(c4, generated)
        metrics[f"ef{ef}_recall_at_10"] = recall(found, truth)
        metrics[f"ef{ef}_passage_recall_at_10"] = recall(
            {n - QUERIES: found[n] for n in real}, passage_truth
        )
        metrics[f"ef{ef}_p50_ms_c1"] = percentile(c1, 50)
        metrics[f"ef{ef}_p95_ms_c1"] = percentile(c1, 95)
        metrics[f"ef{ef}_p50_ms_c4"] = percentile(c4, 50)
        metrics[f"ef{ef}_p95_ms_c4"] = percentile(c4, 95)
        print(
            f"  ef_search {ef}: recall {metrics[f'ef{ef}_recall_at_10']:.3f}, "
            f"p95 c4 {metrics[f'ef{ef}_p95_ms_c4']:.2f} ms"
        )
    metrics["ef_search"] = float(app_ef)
    metrics["recall_at_10"] = metrics[f"ef{app_ef}_recall_at_10"]
    metrics["passage_recall_at_10"] = metrics[f"ef{app_ef}_passage_recall_at_10"]
    metrics["p50_ms_c1"] = metrics[f"ef{app_ef}_p50_ms_c1"]
    metrics["p95_ms_c1"] = metrics[f"ef{app_ef}_p95_ms_c1"]
    metrics["p50_ms_c4"] = metrics[f"ef{app_ef}_p50_ms_c4"]
    metrics["p95_ms_c4"] = metrics[f"ef{app_ef}_p95_ms_c4"]

    # 1%-selective filter: the plan PostgreSQL picks, and the HNSW path (the plan for a less
    # selective filter), each with the app's iterative scan and without it.
    app_setting = f"SET LOCAL hnsw.ef_search = {app_ef}"
    measured = run_clients(
        schema, filtered, [[app_setting, *s] for _, _, s in filtered_variants], query_literals, 1
    )
    for (label, _, _), (found, c1) in zip(filtered_variants, measured, strict=True):
        c1 = _ms(c1, range(QUERIES))
        metrics[f"{label}_full_k_ratio"] = statistics.fmean(
            len(rows) == K for rows in found.values()
        )
        metrics[f"{label}_recall_at_10"] = recall(found, filtered_truth)
        metrics[f"{label}_p50_ms_c1"] = percentile(c1, 50)
        metrics[f"{label}_p95_ms_c1"] = percentile(c1, 95)

    metrics |= _search_end_to_end(
        tenant, [" ".join(t.split()[:6]) for t in passage_texts][:SEARCH_CALLS]
    )
    metrics |= _ingest(tenant, handbook)
    metrics["bench_s"] = time.perf_counter() - began

    goals = {
        "recall_at_10": goal(metrics["recall_at_10"], ">=", 0.95),
        "p95_ms_c4": goal(metrics["p95_ms_c4"], "<=", 10.0),
        "filtered_full_k_ratio": goal(metrics["filtered_full_k_ratio"], ">=", 1.0),
        "filtered_hnsw_full_k_ratio": goal(metrics["filtered_hnsw_full_k_ratio"], ">=", 1.0),
    }
    write_result(NAME, metrics, goals)
    return metrics
