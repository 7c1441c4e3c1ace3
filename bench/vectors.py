"""Knowledge-base vectors: `vector(384)` (fp32, what chunks use) vs `halfvec(384)` (fp16) in
pgvector, each with the same HNSW index (cosine, m=16, ef_construction=64), on real
all-MiniLM-L6-v2 embeddings of templated sentences.

Measured in one run on one table: index size and build time, kNN query latency (p50, the two
kinds interleaved) and recall@10 against exact search. It informs "halfvec where it helps":
halfvec halves the index (more of it stays in memory per tenant); it is worth switching to when
its recall matches fp32's. No goal is set by the issue; the bench reports the ratios."""

from __future__ import annotations

import os
import time

from bench.common import goal, percentile, use_scratch_database, write_result
from bench.embeddings import short_sentences

NAME = "vectors"
ROWS = int(os.environ.get("BENCH_VECTORS_ROWS", "8000"))
QUERIES = int(os.environ.get("BENCH_VECTORS_QUERIES", "200"))
K = 10


def _literal(vector) -> str:
    return "[" + ",".join(f"{x:.7f}" for x in vector) + "]"


def _connect():
    import psycopg

    return psycopg.connect(
        os.environ["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True
    )


def _load(conn, vectors) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute("CREATE TABLE chunks (id int PRIMARY KEY, v vector(384), h halfvec(384))")
    with conn.cursor().copy("COPY chunks (id, v, h) FROM STDIN") as copy:
        for number, vector in enumerate(vectors):
            text = _literal(vector)
            copy.write_row((number, text, text))
    conn.execute("VACUUM ANALYZE chunks")


def _build(conn, column: str, opclass: str) -> tuple[float, int]:
    started = time.perf_counter()
    conn.execute(
        f"CREATE INDEX chunks_{column}_hnsw ON chunks USING hnsw ({column} {opclass}) "
        "WITH (m = 16, ef_construction = 64)"
    )
    seconds = time.perf_counter() - started
    size = conn.execute(f"SELECT pg_relation_size('chunks_{column}_hnsw')").fetchone()[0]
    return seconds, size


def _knn(conn, column: str, cast: str, query: str) -> tuple[list[int], float]:
    started = time.perf_counter()
    rows = conn.execute(
        f"SELECT id FROM chunks ORDER BY {column} <=> %s::{cast} LIMIT {K}", (query,)
    ).fetchall()
    return [row[0] for row in rows], time.perf_counter() - started


def _exact(conn, query: str) -> set[int]:
    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        rows = conn.execute(
            f"SELECT id FROM chunks ORDER BY v <=> %s::vector LIMIT {K}", (query,)
        ).fetchall()
    return {row[0] for row in rows}


def run() -> dict:
    from ai.embedding import get_embedder

    use_scratch_database("atrium_bench_vectors")
    embedder = get_embedder()
    vectors = embedder.embed(short_sentences(ROWS, seed=31))
    queries = [_literal(v) for v in embedder.embed(short_sentences(QUERIES, seed=97))]

    with _connect() as conn:
        _load(conn, vectors)
        fp32_build_s, fp32_bytes = _build(conn, "v", "vector_cosine_ops")
        fp16_build_s, fp16_bytes = _build(conn, "h", "halfvec_cosine_ops")
        for query in queries[:20]:  # warm the indexes into the buffer cache
            _knn(conn, "v", "vector", query)
            _knn(conn, "h", "halfvec", query)
        fp32_ms, fp16_ms, fp32_recall, fp16_recall = [], [], [], []
        for query in queries:
            truth = _exact(conn, query)
            ids, seconds = _knn(conn, "v", "vector", query)
            fp32_ms.append(seconds * 1000)
            fp32_recall.append(len(truth & set(ids)) / K)
            ids, seconds = _knn(conn, "h", "halfvec", query)
            fp16_ms.append(seconds * 1000)
            fp16_recall.append(len(truth & set(ids)) / K)

    mean = lambda values: sum(values) / len(values)  # noqa: E731
    metrics = {
        "rows": float(ROWS),
        "fp32_index_mb": fp32_bytes / 1_048_576,
        "halfvec_index_mb": fp16_bytes / 1_048_576,
        "halfvec_index_size_ratio": fp16_bytes / fp32_bytes,
        "fp32_build_s": fp32_build_s,
        "halfvec_build_s": fp16_build_s,
        "fp32_query_p50_ms": percentile(fp32_ms, 50),
        "halfvec_query_p50_ms": percentile(fp16_ms, 50),
        "halfvec_query_speed_ratio": percentile(fp32_ms, 50) / percentile(fp16_ms, 50),
        "fp32_recall_at_10_ratio": mean(fp32_recall),
        "halfvec_recall_at_10_ratio": mean(fp16_recall),
    }
    goals = {
        # Only worth switching if it keeps recall; the index should be about half the size.
        "halfvec_recall_at_10_ratio": goal(
            metrics["halfvec_recall_at_10_ratio"], ">=", metrics["fp32_recall_at_10_ratio"] - 0.01
        ),
        "halfvec_index_size_ratio": goal(metrics["halfvec_index_size_ratio"], "<=", 0.6),
    }
    write_result(NAME, metrics, goals)
    return metrics
