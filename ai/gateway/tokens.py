"""Token estimates: for when a provider reports none (records are then flagged `estimated`),
and for size limits checked before a call."""

from __future__ import annotations

from collections.abc import Iterable

# A word piece covers at least one character, and normalising turns one character into at most
# three (a Hangul syllable into its jamo; measured over every code point), so a text has at most
# this many word pieces per character. 4 leaves room.
MAX_TOKENS_PER_CHAR = 4


def estimate_tokens(text: str) -> int:
    """Word pieces of the local MiniLM tokenizer: an estimate for other models' tokenizers."""
    if not text:
        return 0
    from ai.embedding.minilm import estimate_tokens as word_pieces

    return word_pieces(text)


def tokens_at_most(texts: Iterable[str]) -> int:
    """An upper bound of the texts' tokens, from their length alone (no tokenising)."""
    return MAX_TOKENS_PER_CHAR * sum(len(text) for text in texts)


def tokens_within(texts: list[str], limit: int) -> bool:
    """Whether the texts have at most `limit` tokens together. Tokenised only when their length
    cannot tell: tokenising a long conversation on every call would cost milliseconds."""
    if tokens_at_most(texts) <= limit:
        return True
    return sum(estimate_tokens(text) for text in texts) <= limit
