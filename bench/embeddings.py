"""Local all-MiniLM-L6-v2 embeddings: fp32 vs dynamically quantised int8 (onnxruntime, no torch).

Throughput (texts/s, batches of 32) for short sentences (~10 words) and for 256-word-piece
inputs, the int8/fp32 speed ratio on each (goal on the 256-token one: int8 at least 2x fp32),
the quality the int8 variant gives up (cosine to fp32 over ~100 varied sentences; top-1
nearest-neighbour agreement on a small query/document set) and the p50 latency of embedding one
short query (what a semantic-cache lookup pays). fp32 and int8 rounds alternate and each figure is
the median over rounds, so load from other processes hits both sides alike. `*_ready_s` is the
first `get_embedder()` call: a graph build when the model cache is cold, else a load. No database.

On a CPU without VNNI (AVX2 only) onnxruntime's u8s8 GEMM is only ~1.4x its fp32 GEMM, so the 2x
goal is out of reach there; the int8 variant pays off on AVX512-VNNI / AVX-VNNI machines. The
run measures that ceiling itself (`int8_gemm_ceiling_x`: one feed-forward-sized GEMM, int8 vs
fp32) and records whether the CPU has int8 dot-product instructions.
"""

from __future__ import annotations

import os
import random
import statistics
import time

import numpy as np

from bench.common import goal, summary, write_result

NAME = "embeddings"
ROUNDS = int(os.environ.get("BENCH_EMBEDDINGS_ROUNDS", "3"))
SHORT_TEXTS = int(os.environ.get("BENCH_EMBEDDINGS_SHORT", "512"))
LONG_TEXTS = int(os.environ.get("BENCH_EMBEDDINGS_LONG", "64"))
LATENCY_QUERIES = int(os.environ.get("BENCH_EMBEDDINGS_QUERIES", "200"))
BATCH = 32

# (document, a query it answers): the retrieval set, also part of the quality sentences.
PAIRS = [
    (
        "To rotate an API key, create a new key, deploy it, then revoke the old one.",
        "how do I replace my api key safely",
    ),
    (
        "Invoices are issued on the first day of each month and paid by card or SEPA debit.",
        "when will I get billed",
    ),
    (
        "Owners can invite members by email; invitations expire after seven days.",
        "how long is an invite link valid",
    ),
    (
        "The assistant answers only from your uploaded documents and cites each source.",
        "where do the answers come from",
    ),
    (
        "PDF, DOCX, Markdown and plain text files up to 50 MB can be uploaded.",
        "what file formats are supported for upload",
    ),
    (
        "Usage beyond the plan allowance is billed per thousand tokens at the overage rate.",
        "what happens if we go over our token quota",
    ),
    (
        "Two-factor authentication with an authenticator app can be required for every member.",
        "can we enforce 2fa for the team",
    ),
    (
        "Deleting a workspace removes all documents, conversations and keys after 30 days.",
        "is data erased when we close the account",
    ),
    (
        "The REST API accepts the OpenAI chat completions format, including streaming.",
        "can I use the openai sdk with this service",
    ),
    (
        "Bring your own provider key to pay the model vendor directly instead of us.",
        "use our own anthropic key",
    ),
    (
        "Rate limits are 60 requests per minute on the free plan and 600 on Pro.",
        "how many calls per minute are allowed",
    ),
    (
        "Documents are split into chunks of about 400 words with a small overlap.",
        "how is a long document divided for search",
    ),
    (
        "The semantic cache returns a stored answer when a new question means the same thing.",
        "does it reuse answers for similar questions",
    ),
    (
        "Support is available by email on weekdays from 9:00 to 18:00 Central European Time.",
        "what are the support hours",
    ),
    (
        "Our servers run in Frankfurt and all data stays within the European Union.",
        "where is my data hosted",
    ),
    (
        "Admins can export the usage ledger as CSV for any date range.",
        "download a spreadsheet of our consumption",
    ),
    (
        "A circuit breaker stops calling a provider that keeps failing and retries later.",
        "what if the model vendor is down",
    ),
    (
        "Prompt versions can be rolled back from the operator console without a deploy.",
        "undo a bad prompt change",
    ),
    (
        "Each tenant's knowledge base is stored in a separate database schema.",
        "are other companies able to see our files",
    ),
    (
        "Webhooks notify your server when a document finishes processing.",
        "get a callback after ingestion completes",
    ),
    (
        "Boil the pasta in salted water for nine minutes, then drain and toss with butter.",
        "how long should spaghetti cook",
    ),
    (
        "The 08:15 train to Lyon leaves from platform 4 and arrives at 10:02.",
        "which platform for the morning train to lyon",
    ),
    (
        "Water the tomato plants early in the morning and avoid wetting the leaves.",
        "best time of day to water tomatoes",
    ),
    (
        "Replace the bicycle chain every 3,000 kilometres to protect the cassette.",
        "how often to change a bike chain",
    ),
    (
        "The museum is closed on Mondays; tickets cost 14 euros, free under 18.",
        "museum opening days and prices",
    ),
    (
        "Store the vaccine between 2 and 8 degrees Celsius and never freeze it.",
        "what temperature should the vaccine be kept at",
    ),
    (
        "A leap year has 366 days; February then has 29 days.",
        "how many days are in february in a leap year",
    ),
    (
        "Python lists are mutable, while tuples cannot be changed after creation.",
        "difference between list and tuple in python",
    ),
    (
        "Le musée du Louvre est fermé le mardi et ouvre à 9 h les autres jours.",
        "quand le louvre est-il fermé",
    ),
    (
        "Die Bibliothek öffnet werktags um 8 Uhr und schließt um 20 Uhr.",
        "Öffnungszeiten der Bibliothek",
    ),
]

_SUBJECTS = [
    "The customer",
    "Our team",
    "A new user",
    "The operator",
    "Maria",
    "The finance lead",
    "Jürgen",
    "The support bot",
    "François",
    "The night shift",
]
_VERBS = [
    "reported",
    "asked about",
    "fixed",
    "reviewed",
    "could not find",
    "escalated",
    "documented",
    "celebrated",
    "questioned",
    "cancelled",
]
_OBJECTS = [
    "the invoice for March",
    "a broken upload of 12 MB",
    "the café's Wi-Fi password",
    "latency spikes above 800 ms",
    "the onboarding checklist",
    "a refund of $49.99",
    "the naïve cache eviction",
    "ticket #4521 (urgent!)",
    "the quarterly roadmap",
    "an expired TLS certificate",
]
_TAILS = [
    "yesterday.",
    "before lunch.",
    "again?!",
    "— twice.",
    "on 2026-03-14.",
    "without telling anyone.",
    "at 3 a.m.",
    "in São Paulo.",
    "for the third time...",
    "as expected.",
]


def short_sentences(count: int, seed: int = 7) -> list[str]:
    """Templated ~10-word sentences with names, numbers, accents and punctuation."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
        for _ in range(count)
    ]


def quality_sentences() -> list[str]:
    """~100 varied sentences: the documents, the queries and 40 templated ones."""
    return [doc for doc, _ in PAIRS] + [query for _, query in PAIRS] + short_sentences(40, 11)


def full_length_texts(embedder, count: int, seed: int = 3) -> list[str]:
    """Texts of exactly `max_tokens` word pieces: shuffled corpus sentences, cut after a piece."""
    from ai.embedding.minilm import load_tokenizer

    tokenizer = load_tokenizer()
    rng = random.Random(seed)
    pool = quality_sentences()
    texts = []
    while len(texts) < count:
        joined = " ".join(rng.sample(pool, len(pool)))
        offsets = tokenizer.encode(joined, add_special_tokens=False).offsets
        # Cutting inside a word can re-tokenise it differently: back off until it fits.
        for pieces in range(embedder.max_tokens - 2, 0, -1):
            text = joined[: offsets[pieces - 1][1]]
            if embedder.count_tokens(text) <= embedder.max_tokens:
                break
        texts.append(text)
    return texts


def _throughput(embedder, texts: list[str]) -> float:
    started = time.perf_counter()
    embedder.embed(texts, batch_size=BATCH)
    return len(texts) / (time.perf_counter() - started)


def _latencies_ms(embedder, queries: list[str]) -> list[float]:
    samples = []
    for query in queries:
        started = time.perf_counter()
        embedder.embed([query])
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _gemm_ceiling() -> float:
    """fp32 MatMul time / int8 MatMulInteger time for one feed-forward GEMM of a 32 x 256-token
    batch (the shape that dominates the model): the most int8 can gain on this CPU."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rows, inner, outer = BATCH * 256, 384, 1536
    rng = np.random.default_rng(5)

    def session(int8: bool):
        kind = (TensorProto.UINT8, TensorProto.INT32) if int8 else (TensorProto.FLOAT,) * 2
        weights = (
            rng.integers(-127, 127, (inner, outer), dtype=np.int8)
            if int8
            else rng.random((inner, outer), dtype=np.float32)
        )
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger" if int8 else "MatMul", ["a", "w"], ["y"])],
            "gemm",
            [helper.make_tensor_value_info("a", kind[0], [rows, inner])],
            [helper.make_tensor_value_info("y", kind[1], [rows, outer])],
            [numpy_helper.from_array(weights, "w")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        return ort.InferenceSession(model.SerializeToString(), options)

    def median_s(sess, inputs) -> float:
        sess.run(None, inputs)
        timings = []
        for _ in range(10):
            started = time.perf_counter()
            sess.run(None, inputs)
            timings.append(time.perf_counter() - started)
        return statistics.median(timings)

    fp32 = median_s(session(False), {"a": rng.random((rows, inner), dtype=np.float32)})
    int8 = median_s(session(True), {"a": rng.integers(0, 255, (rows, inner), dtype=np.uint8)})
    return fp32 / int8


def _cpu_has_int8_dot_product() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()  # noqa: SIM115 (read once)
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags or "asimddp" in flags


def run() -> dict:
    from ai.embedding import get_embedder

    started = time.perf_counter()
    fp32 = get_embedder()
    fp32_ready = time.perf_counter() - started
    started = time.perf_counter()
    int8 = get_embedder(quantized=True)
    int8_ready = time.perf_counter() - started

    short = short_sentences(SHORT_TEXTS)
    full = full_length_texts(fp32, LONG_TEXTS)
    for embedder in (fp32, int8):  # warm-up: first runs allocate arenas and pick kernels
        embedder.embed(short[:BATCH])
        embedder.embed(full[:BATCH])

    rates: dict[str, list[float]] = {key: [] for key in ("fp32_short", "int8_short")}
    rates |= {"fp32_256": [], "int8_256": []}
    for _ in range(ROUNDS):
        rates["fp32_short"].append(_throughput(fp32, short))
        rates["int8_short"].append(_throughput(int8, short))
        rates["fp32_256"].append(_throughput(fp32, full))
        rates["int8_256"].append(_throughput(int8, full))
    median = {key: statistics.median(values) for key, values in rates.items()}

    sentences = quality_sentences()
    cosines = np.sum(fp32.embed(sentences) * int8.embed(sentences), axis=1)

    # Each query's own document among 70 (the 40 templated sentences are distractors).
    docs = [doc for doc, _ in PAIRS] + short_sentences(40, 11)
    queries = [query for _, query in PAIRS]
    top1 = {}
    for name, embedder in (("fp32", fp32), ("int8", int8)):
        scores = embedder.embed(queries) @ embedder.embed(docs).T
        top1[name] = np.argmax(scores, axis=1)
    expected = np.arange(len(PAIRS))

    queries_for_latency = short_sentences(LATENCY_QUERIES, seed=23)
    fp32_latency = summary(_latencies_ms(fp32, queries_for_latency))
    int8_latency = summary(_latencies_ms(int8, queries_for_latency))

    metrics = {
        "fp32_short_texts_per_s": median["fp32_short"],
        "int8_short_texts_per_s": median["int8_short"],
        "fp32_256tok_texts_per_s": median["fp32_256"],
        "int8_256tok_texts_per_s": median["int8_256"],
        "int8_speedup_short_x": median["int8_short"] / median["fp32_short"],
        "int8_speedup_256tok_x": median["int8_256"] / median["fp32_256"],
        "int8_cosine_mean_ratio": float(np.mean(cosines)),
        "int8_cosine_min_ratio": float(np.min(cosines)),
        "int8_top1_agreement_ratio": float(np.mean(top1["fp32"] == top1["int8"])),
        "fp32_top1_accuracy_ratio": float(np.mean(top1["fp32"] == expected)),
        "int8_top1_accuracy_ratio": float(np.mean(top1["int8"] == expected)),
        "fp32_query_p50_ms": fp32_latency["p50"],
        "fp32_query_p95_ms": fp32_latency["p95"],
        "int8_query_p50_ms": int8_latency["p50"],
        "fp32_ready_s": fp32_ready,
        "int8_ready_s": int8_ready,
        # What the hardware allows: the whole model cannot beat its dominant GEMM's ratio.
        "int8_gemm_ceiling_x": _gemm_ceiling(),
        "cpu_int8_dot_product_flag": float(_cpu_has_int8_dot_product()),
    }
    goals = {
        "int8_speedup_256tok_x": goal(metrics["int8_speedup_256tok_x"], ">=", 2.0),
        "int8_cosine_min_ratio": goal(metrics["int8_cosine_min_ratio"], ">=", 0.98),
        "int8_top1_agreement_ratio": goal(metrics["int8_top1_agreement_ratio"], ">=", 0.95),
    }
    write_result(NAME, metrics, goals)
    return metrics
