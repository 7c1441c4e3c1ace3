"""Token-aware chunks of an extracted document, each small enough for the embedder as it is.

    chunks = chunk(extract(data, name), max_tokens=200, overlap=0.2)
    extracted.text[c.start:c.end] == c.text      # for every chunk c, to map citations back

Chunks never cross a section (so never a page or a heading); inside a section they break at the
strongest boundary that fits: paragraph, then sentence, then line, then word, and only inside a
word when that one word is over the limit. Small paragraphs are packed together; consecutive
chunks of a section overlap by about `overlap * max_tokens` word pieces, whole sentences where
possible. Every chunk is counted with the real tokenizer after planning, so the limit is a hard
guarantee: nothing gets cut at embed time (DESIGN.md, invariant 5).

Speed: the document is tokenised once (in parallel pieces) and the plan works on token offsets;
the final chunks are counted once more in one batch.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ai.embedding.minilm import LocalEmbedder, load_tokenizer
from retrieval.extract import Extracted

EMBEDDER_MAX_TOKENS = LocalEmbedder.max_tokens  # all-MiniLM-L6-v2 reads 256, [CLS]/[SEP] included
MIN_MAX_TOKENS = 16
SPECIAL_TOKENS = 2  # [CLS] and [SEP]
MAX_OVERLAP = 0.5
# A chunk is also held to max_tokens * this many characters: prose averages 4-5 characters per
# word piece, so only degenerate text (a 3,000-letter "word" is one [UNK]) reaches it.
CHARS_PER_TOKEN_LIMIT = 10
_ENCODE_PIECE_CHARS = 32_768

PARAGRAPH, SENTENCE, LINE, WORD = 4, 3, 2, 1
_RANKS = (PARAGRAPH, SENTENCE, LINE, WORD)
_OVERLAP_TIERS = ((PARAGRAPH, SENTENCE), (LINE,), (WORD,))

# Whitespace between two non-space characters, and the stronger kinds of it.
_WORD_GAP = re.compile(r"(?<=\S)\s+(?=\S)")
_LINE_GAP = re.compile(r"(?<=\S)[^\S\n]*\n\s*(?=\S)")
_PARAGRAPH_GAP = re.compile(r"(?<=\S)[^\S\n]*\n[^\S\n]*\n\s*(?=\S)")
_LEADING_SPACE = re.compile(r"\s*")
_PIECE_BREAK = re.compile(r"[ \n]")
# The ideographs BERT's normaliser surrounds with spaces: each one is a word of its own.
_CJK = re.compile(
    "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ceaf"
    "\U0002f800-\U0002fa1f]"
)
# A CJK full stop, exclamation or question mark and its closing marks end a sentence (no space
# follows in CJK text).
_CJK_SENTENCE_END = re.compile(
    "[\u3002\uff01\uff1f][\u300d\u300f\uff09\u3015\u3011\u201d\u2019\"')]*(?=\\S)"
)
_SENTENCE_GAP = re.compile(
    "[.!?\u2026\u3002\uff01\uff1f\u061f\u0964][\"')\\]\u201d\u2019\u00bb\u300d\u300f\uff09]?"
    r"\s+(?=\S)"
)


@dataclass(frozen=True, slots=True)
class Chunk:
    """`text` is `extracted.text[start:end]`; `token_count` is what the embedder reads for it,
    [CLS]/[SEP] included; `page` and `heading_path` are those of its section."""

    index: int
    text: str
    token_count: int
    page: int | None
    heading_path: tuple[str, ...]
    start: int
    end: int


def chunk(
    extracted: Extracted,
    *,
    max_tokens: int = 200,
    overlap: float = 0.2,
    count_tokens: Callable[[str], int] | None = None,
    max_chars: int | None = None,
) -> list[Chunk]:
    """The chunks of `extracted`, in document order; deterministic.

    Every chunk has `count_tokens(chunk.text) <= max_tokens`. `count_tokens` defaults to the
    embedder's own count (all-MiniLM-L6-v2 word pieces with [CLS]/[SEP]); another counter (e.g.
    `get_embedder().count_tokens`) is honoured too, chunks it finds too long being split further.
    `max_tokens` must be between 16 and the embedder's 256, `overlap` between 0 and 0.5;
    `max_chars` (default 10 * max_tokens) also bounds a chunk's length in characters.
    Raises ValueError for bad arguments or sections whose `start` does not match the text."""
    if not MIN_MAX_TOKENS <= max_tokens <= EMBEDDER_MAX_TOKENS:
        raise ValueError(
            f"max_tokens must be between {MIN_MAX_TOKENS} and {EMBEDDER_MAX_TOKENS} (what "
            f"{LocalEmbedder.model_name} reads, [CLS]/[SEP] included), not {max_tokens}"
        )
    if not 0 <= overlap <= MAX_OVERLAP:
        raise ValueError(f"overlap must be between 0 and {MAX_OVERLAP}, not {overlap}")
    max_chars = max_tokens * CHARS_PER_TOKEN_LIMIT if max_chars is None else max_chars
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, not {max_chars}")
    document = extracted.text
    for section in extracted.sections:
        if document[section.start : section.start + len(section.text)] != section.text:
            raise ValueError(f"section at {section.start} does not match Extracted.text")

    sections = [section for section in extracted.sections if section.text.strip()]
    token_starts = _token_starts([section.text for section in sections])
    overlap_tokens = min(round(overlap * max_tokens), (max_tokens - SPECIAL_TOKENS) // 2)
    plans = [
        _SectionPlan(section.text, starts, max_tokens)
        for section, starts in zip(sections, token_starts, strict=True)
    ]
    planned = [
        (number, start, end)
        for number, plan in enumerate(plans)
        for start, end in plan.spans(0, len(plan.text), max_chars, overlap_tokens)
    ]
    fitted = _Fitter(plans, _batch_counter(count_tokens), max_tokens).fit(planned)
    return [
        Chunk(
            index=index,
            text=sections[number].text[start:end],
            token_count=count,
            page=sections[number].page,
            heading_path=sections[number].heading_path,
            start=sections[number].start + start,
            end=sections[number].start + end,
        )
        for index, (number, start, end, count) in enumerate(fitted)
    ]


def _batch_counter(count_tokens: Callable[[str], int] | None) -> Callable[[list[str]], list[int]]:
    if count_tokens is None:
        tokenizer = load_tokenizer()
        return lambda texts: [len(encoding.ids) for encoding in tokenizer.encode_batch(texts)]
    batch = getattr(getattr(count_tokens, "__self__", None), "count_tokens_batch", None)
    if isinstance(getattr(count_tokens, "__self__", None), LocalEmbedder) and callable(batch):
        return lambda texts: list(batch(texts))
    return lambda texts: [count_tokens(text) for text in texts]


def _token_starts(texts: list[str]) -> list[list[int]]:
    """Start offsets of the word pieces of each text (no special tokens). Long texts are cut at
    spaces into pieces tokenised in parallel: BERT words never span a space, so the pieces give
    the same word pieces as the whole."""
    pieces: list[str] = []
    owners: list[tuple[int, int]] = []
    for number, text in enumerate(texts):
        at = 0
        while at < len(text):
            stop = len(text)
            if at + _ENCODE_PIECE_CHARS < len(text):
                match = _PIECE_BREAK.search(text, at + _ENCODE_PIECE_CHARS)
                stop = match.start() if match else len(text)
            pieces.append(text[at:stop])
            owners.append((number, at))
            at = stop
    starts: list[list[int]] = [[] for _ in texts]
    encodings = load_tokenizer().encode_batch(pieces, add_special_tokens=False)
    for encoding, (number, shift) in zip(encodings, owners, strict=True):
        starts[number].extend(start + shift for start, _ in encoding.offsets)
    for offsets in starts:
        offsets.sort()  # already sorted in practice; bisecting needs it guaranteed
    return starts


def _breaks(text: str) -> dict[int, list[int]]:
    """Positions where a chunk may start (the first character after a boundary), by rank."""
    rank_at: dict[int, int] = {}  # every boundary stronger than a space between words
    length = len(text)
    for match in _CJK.finditer(text):  # each ideograph is a word: boundaries on both sides
        start, end = match.span()
        for position in (start, end):
            if 0 < position < length and not text[position].isspace():
                rank_at[position] = WORD
    for pattern, rank in (
        (_CJK_SENTENCE_END, SENTENCE),
        (_LINE_GAP, LINE),
        (_SENTENCE_GAP, SENTENCE),
        (_PARAGRAPH_GAP, PARAGRAPH),
    ):
        for match in pattern.finditer(text):
            position = match.end()
            if position >= length or (rank == SENTENCE and text[position].islower()):
                continue  # "e.g. the": a full stop before a lower-case word ends no sentence
            if rank > rank_at.get(position, 0):
                rank_at[position] = rank
    by_rank: dict[int, list[int]] = {rank: [] for rank in _RANKS}
    for position in sorted(rank_at):
        by_rank[rank_at[position]].append(position)
    words = [m.end() for m in _WORD_GAP.finditer(text) if m.end() not in rank_at]
    by_rank[WORD] = sorted(by_rank[WORD] + words) if by_rank[WORD] else words
    return by_rank


class _SectionPlan:
    """Chunk boundaries inside one section's text, planned on its word-piece offsets."""

    def __init__(self, text: str, token_starts: list[int], max_tokens: int) -> None:
        self.text = text
        self.starts = token_starts
        self.allowed = max_tokens - SPECIAL_TOKENS
        self.breaks = _breaks(text)

    def spans(self, low: int, high: int, max_chars: int, overlap: int) -> list[tuple[int, int]]:
        """(start, end) of the chunks covering text[low:high], stripped of outer whitespace."""
        text = self.text
        out: list[tuple[int, int]] = []
        start = _LEADING_SPACE.match(text, low, high).end()
        previous_cut = start
        while start < high:
            limit = self._limit(start, high, max_chars)
            cut = high if limit >= high else self._best_break(previous_cut, limit)
            end = start + len(text[start:cut].rstrip())
            out.append((start, end))
            following = _LEADING_SPACE.match(text, cut, high).end()
            if following >= high:
                break
            again = self._overlap_start(start, end, overlap, max_chars) if overlap else None
            if again is not None and self._limit(again, high, max_chars) > cut:
                start = again
            else:
                start = following
            previous_cut = cut
        return out

    def _limit(self, start: int, high: int, max_chars: int) -> int:
        """The furthest cut after `start` whose chunk stays within the token and char limits."""
        first = bisect_left(self.starts, start)
        limit = min(high, start + max_chars)
        if first + self.allowed < len(self.starts):
            limit = min(limit, self.starts[first + self.allowed])
        return max(limit, start + 1)  # never empty: a character over the limit fails the fit

    def _best_break(self, floor: int, limit: int) -> int:
        """The strongest, then latest, boundary in (floor, limit]."""
        for rank in _RANKS:
            positions = self.breaks[rank]
            found = bisect_right(positions, limit) - 1
            if found >= 0 and positions[found] > floor:
                return positions[found]
        # One word longer than the limit: cut it at a word piece, else at a character.
        found = bisect_right(self.starts, limit) - 1
        if found >= 0 and self.starts[found] > floor:
            return self.starts[found]
        cut = limit
        while cut - 1 > floor and cut < len(self.text) and unicodedata.combining(self.text[cut]):
            cut -= 1  # keep an accent with its letter
        return cut

    def _overlap_start(self, start: int, end: int, overlap: int, max_chars: int) -> int | None:
        """Where the next chunk starts to repeat the tail of [start, end): the earliest boundary
        leaving at most `overlap` word pieces and max_chars / 2 characters, whole sentences
        first, then lines, then words; None when nothing fits."""
        first_allowed = bisect_left(self.starts, end) - overlap
        low = max(start + 1, end - max_chars // 2)
        if first_allowed > 0:
            low = max(low, self.starts[first_allowed - 1] + 1)
        for ranks in _OVERLAP_TIERS:
            candidates = []
            for rank in ranks:
                positions = self.breaks[rank]
                found = bisect_left(positions, low)
                if found < len(positions) and positions[found] < end:
                    candidates.append(positions[found])
            if candidates:
                return min(candidates)
        return None


class _Fitter:
    """Counts planned chunks with the real counter, in one batch, and splits any chunk that is
    over the limit (only possible after a cut inside a word, or with a different counter) into
    halves or smaller until every one fits."""

    def __init__(
        self,
        plans: Sequence[_SectionPlan],
        count: Callable[[list[str]], list[int]],
        max_tokens: int,
    ) -> None:
        self.plans, self.count, self.max_tokens = plans, count, max_tokens

    def fit(self, planned: list[tuple[int, int, int]]) -> list[tuple[int, int, int, int]]:
        counts = self.count([self.plans[number].text[a:b] for number, a, b in planned])
        fitted: list[tuple[int, int, int, int]] = []
        for (number, start, end), count in zip(planned, counts, strict=True):
            if count <= self.max_tokens:
                fitted.append((number, start, end, count))
                continue
            if end - start <= 1:
                raise ValueError(
                    f"one character counts {count} tokens, over max_tokens={self.max_tokens}"
                )
            pieces = self.plans[number].spans(start, end, max(1, (end - start) // 2), 0)
            fitted.extend(self.fit([(number, a, b) for a, b in pieces]))
        return fitted
