"""all-MiniLM-L6-v2 sentence embeddings on onnxruntime, without torch.

The graph comes from `ai.embedding.graph` (built once from the packaged safetensors and cached,
see `ai.embedding.cache`); tokenisation is the model's own `tokenizer.json` run by `tokenizers`.
The model reads at most 256 word pieces: longer text is refused with `InputTooLong` unless the
caller asks for truncation, so nothing is ever cut without the code choosing it.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort
from django.core.exceptions import ImproperlyConfigured
from tokenizers import Tokenizer

from ai.embedding import cache, graph

DEFAULT_THREADS = 2


class InputTooLong(ValueError):
    """A text has more word pieces than the model reads and truncation was not requested.

    `index` is the position of the first such text in the input list, `tokens` its word-piece
    count (including [CLS]/[SEP]), `limit` the model's maximum, `count` how many texts are over."""

    def __init__(self, *, index: int, tokens: int, limit: int, count: int = 1) -> None:
        self.index, self.tokens, self.limit, self.count = index, tokens, limit, count
        others = f" ({count - 1} more text(s) are also too long)" if count > 1 else ""
        super().__init__(
            f"Text {index} has {tokens} word pieces; {cache.MODEL_NAME} reads at most {limit} "
            f"(including [CLS]/[SEP]){others}. Split it, or pass truncate=True to embed only "
            f"its first {limit} word pieces."
        )


@functools.cache
def load_tokenizer(tokenizer_file: Path | None = None) -> Tokenizer:
    """The model's WordPiece tokenizer with truncation and padding switched off.

    tokenizer.json as shipped truncates to 128 and pads to 128: both are disabled here, so counts
    are true counts and the embedder pads each batch itself. Shared, never mutated afterwards."""
    tokenizer = Tokenizer.from_file(str(tokenizer_file or cache.model_dir() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def estimate_tokens(text: str) -> int:
    """Word pieces in `text` by the all-MiniLM-L6-v2 (BERT uncased) tokenizer, without special
    tokens. Exact for this embedder (minus its 2 special tokens); for any other model, an
    estimate of its token count (same order of magnitude for English prose, not exact)."""
    return len(load_tokenizer().encode(text, add_special_tokens=False).ids)


def embedding_threads() -> int:
    """Intra-op threads for onnxruntime: setting `LOCAL_EMBEDDING_THREADS`, else the environment
    variable `ATRIUM_EMBEDDING_THREADS`, else 2. A value that is not a positive integer raises."""
    configured = cache.django_setting("LOCAL_EMBEDDING_THREADS")
    raw = configured if configured is not None else os.environ.get("ATRIUM_EMBEDDING_THREADS")
    if raw is None:
        return DEFAULT_THREADS
    try:
        threads = int(str(raw))
    except ValueError:
        threads = 0
    if threads < 1:
        raise ImproperlyConfigured(f"Embedding threads must be a positive integer, not {raw!r}.")
    return threads


class LocalEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings: 384 float32 values per text, L2-normalised, equal to
    sentence-transformers' `encode` of the same model (within float32 rounding, ~1e-7 for fp32).

    Thread-safe once built. Build through `get_embedder()` (one per process per variant) or
    `LocalEmbedder.load()`; the constructor takes an already-built graph file."""

    dimensions: ClassVar[int] = 384
    max_tokens: ClassVar[int] = 256  # all-MiniLM-L6-v2's max_seq_length, [CLS] and [SEP] included
    model_name: ClassVar[str] = cache.MODEL_NAME

    def __init__(
        self,
        graph_file: Path,
        *,
        quantized: bool = False,
        intra_op_threads: int = DEFAULT_THREADS,
        tokenizer_file: Path | None = None,
        built_graph: bool = False,
    ) -> None:
        if intra_op_threads < 1:
            raise ValueError("intra_op_threads must be at least 1")
        self.graph_file = graph_file
        self.quantized = quantized
        self.intra_op_threads = intra_op_threads
        # Whether creating this embedder built the graph file (False: read from the cache).
        self.built_graph = built_graph
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(graph_file), options, providers=["CPUExecutionProvider"]
        )
        width = self._session.get_outputs()[0].shape[-1]
        if width != self.dimensions:
            raise ValueError(
                f"{graph_file} gives {width}-dimensional vectors, not {self.dimensions}"
            )
        self._tokenizer = load_tokenizer(tokenizer_file)
        self._sep = self._tokenizer.token_to_id("[SEP]")

    @classmethod
    def load(
        cls,
        *,
        quantized: bool = False,
        intra_op_threads: int = DEFAULT_THREADS,
        cache_dir: Path | None = None,
    ) -> LocalEmbedder:
        """Build or reuse the cached graph of the variant in `cache_dir` (default
        `cache.model_cache_dir()`) and open it. Prefer `get_embedder()`, which does this once."""
        variant = cache.INT8 if quantized else cache.FP32
        path, built = cache.ensure_graph(variant, cache_dir=cache_dir)
        return cls(path, quantized=quantized, intra_op_threads=intra_op_threads, built_graph=built)

    @property
    def variant(self) -> str:
        return cache.INT8 if self.quantized else cache.FP32

    def count_tokens(self, text: str) -> int:
        """Word pieces the model would read for `text`, including [CLS] and [SEP]."""
        return len(self._tokenizer.encode(text).ids)

    def count_tokens_batch(self, texts: Sequence[str]) -> list[int]:
        """`count_tokens` for each text, in order."""
        return [len(encoding.ids) for encoding in self._tokenizer.encode_batch(list(texts))]

    def embed(
        self, texts: list[str], *, truncate: bool = False, batch_size: int = 32
    ) -> np.ndarray:
        """Embed `texts`: float32 array of shape (len(texts), 384), row i for texts[i], each row of
        unit L2 norm. An empty list gives shape (0, 384).

        A text over `max_tokens` word pieces raises `InputTooLong` (before any work is done)
        unless `truncate=True`, which keeps [CLS], the first 254 word pieces and [SEP], as
        sentence-transformers does. Texts are grouped by length into batches of at most
        `batch_size`; the result does not depend on the batching."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts; wrap a single text in a list")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        rows = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]
        too_long = [index for index, ids in enumerate(rows) if len(ids) > self.max_tokens]
        if too_long and not truncate:
            first = too_long[0]
            raise InputTooLong(
                index=first, tokens=len(rows[first]), limit=self.max_tokens, count=len(too_long)
            )
        for index in too_long:
            rows[index] = rows[index][: self.max_tokens - 1] + [self._sep]

        result = np.empty((len(rows), self.dimensions), dtype=np.float32)
        # Similar lengths together: less padding, and padding never changes a row's result.
        order = sorted(range(len(rows)), key=lambda index: len(rows[index]))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            result[chosen] = self._run([rows[index] for index in chosen])
        return result

    def _run(self, rows: list[list[int]]) -> np.ndarray:
        width = max(len(ids) for ids in rows)
        input_ids = np.zeros((len(rows), width), dtype=np.int64)  # [PAD] is id 0
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        feeds = {graph.INPUT_IDS: input_ids, graph.ATTENTION_MASK: attention_mask}
        return self._session.run([graph.OUTPUT], feeds)[0]


_embedders: dict[bool, LocalEmbedder] = {}
_embedder_locks = {False: threading.Lock(), True: threading.Lock()}


def get_embedder(quantized: bool = False) -> LocalEmbedder:
    """The process-wide embedder for the fp32 (default) or dynamically quantised int8 variant.

    The first call per variant builds the graph into the cache directory, or reads it from there
    if an earlier process did (seconds); later calls return the same object (free). Thread-safe:
    concurrent first calls build once. Threads from `embedding_threads()`."""
    quantized = bool(quantized)
    embedder = _embedders.get(quantized)
    if embedder is None:
        with _embedder_locks[quantized]:
            embedder = _embedders.get(quantized)
            if embedder is None:
                embedder = LocalEmbedder.load(
                    quantized=quantized, intra_op_threads=embedding_threads()
                )
                _embedders[quantized] = embedder
    return embedder
