"""Token estimates for when a provider reports none (records are then flagged `estimated`)."""

from __future__ import annotations


def estimate_tokens(text: str) -> int:
    """Word pieces of the local MiniLM tokenizer: an estimate for other models' tokenizers."""
    if not text:
        return 0
    from ai.embedding.minilm import estimate_tokens as word_pieces

    return word_pieces(text)
