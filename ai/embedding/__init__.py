"""Local sentence embeddings (all-MiniLM-L6-v2 on onnxruntime, no torch) and a token estimator.

    from ai.embedding import get_embedder
    vectors = get_embedder().embed(["first text", "second text"])  # float32 (2, 384), unit rows

`get_embedder(quantized=True)` gives the int8 variant (faster on CPUs with fast int8 arithmetic,
cosine to fp32 >= 0.98). Text over 256 word pieces raises `InputTooLong` unless `truncate=True`.
"""

from ai.embedding.minilm import (
    InputTooLong,
    LocalEmbedder,
    embedding_threads,
    estimate_tokens,
    get_embedder,
)

__all__ = ["InputTooLong", "LocalEmbedder", "embedding_threads", "estimate_tokens", "get_embedder"]
