"""Token-aware chunking (retrieval.chunking): every chunk fits the embedder as counted by the real
all-MiniLM-L6-v2 tokenizer, maps back to the extracted text exactly, loses nothing, stays within
one page and one heading path, and breaks at the strongest boundary that fits. No database."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from ai.embedding.minilm import load_tokenizer
from retrieval.chunking import EMBEDDER_MAX_TOKENS, Chunk, chunk
from retrieval.extract import Extracted, Section, extract
from tests.test_extract import make_pdf

KB = Path(__file__).parent / "data" / "kb"
VOCABULARY = (
    "tenant quota invoice retrieval citation embedding assistant gateway provider usage ledger "
    "schema vector search answer document upload billing plan member owner"
)
WORDS = VOCABULARY.split()


def real_count(text: str) -> int:
    return len(load_tokenizer().encode(text).ids)


def document(*sections: str, kind: str = "text") -> Extracted:
    return Extracted.build(kind, "t", [(text, None, ()) for text in sections])


def prose(rng: random.Random, sentences: int, longest: int = 22) -> str:
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, longest))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


def assert_sound(extracted: Extracted, chunks: list[Chunk], max_tokens: int) -> None:
    """Within the limit by the real tokenizer, exact offsets, one section each, nothing lost."""
    text = extracted.text
    assert [c.index for c in chunks] == list(range(len(chunks)))
    covered = 0
    for c in chunks:
        assert text[c.start : c.end] == c.text
        assert c.text == c.text.strip() and c.text
        assert c.token_count == real_count(c.text) <= max_tokens
        section = next(s for s in extracted.sections if s.start <= c.start < s.start + len(s.text))
        assert c.end <= section.start + len(section.text)
        assert (c.page, c.heading_path) == (section.page, section.heading_path)
        assert not text[covered : c.start].strip(), "text left out"
        covered = max(covered, c.end)
    assert not text[covered:].strip()


def adversarial() -> dict[str, str]:
    rng = random.Random(3)
    return {
        "one 5,000-word sentence": " ".join(rng.choice(WORDS) for _ in range(5000)),
        "a 3,000-letter word": "intro " + "x" * 3000 + " outro",
        "a 3,000-char word of many word pieces": "-".join(["ab"] * 1000),
        "CJK without spaces": "東京は日本の首都です。人口は約千四百万人で、世界最大の都市圏です。"
        * 80,
        "CJK with spaces and Latin": "東京は首都です。 Tokyo is big. 大阪 も 大きい\uff01 " * 300,
        "lots of tiny paragraphs": "\n\n".join(f"Note {i}: ok." for i in range(1500)),
        "accents and emoji": " ".join("café naïve résumé 👩‍💻 Ελληνικά" for _ in range(600)),
        "a long base64 line": "data " + "QUJD+/9=" * 500,
        "numbers": " ".join(str(rng.randrange(10**12)) for _ in range(1500)),
    }


@pytest.mark.parametrize("name", list(adversarial()))
@pytest.mark.parametrize("max_tokens", [200, 32])
def test_it_keeps_every_chunk_within_the_limit_on_adversarial_input(name, max_tokens):
    extracted = document(adversarial()[name])
    chunks = chunk(extracted, max_tokens=max_tokens)
    assert len(chunks) > 1
    assert_sound(extracted, chunks, max_tokens)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(257, 0.2), (1000, 0.2), (8, 0.2), (200, 0.9)])
def test_it_refuses_limits_the_embedder_cannot_honour(max_tokens, overlap):
    with pytest.raises(ValueError, match=r"max_tokens|overlap"):
        chunk(document("text"), max_tokens=max_tokens, overlap=overlap)


def test_it_accepts_the_embedders_full_window():
    extracted = document(" ".join(["word"] * 2000))
    chunks = chunk(extracted, max_tokens=EMBEDDER_MAX_TOKENS)
    assert max(c.token_count for c in chunks) == EMBEDDER_MAX_TOKENS
    assert_sound(extracted, chunks, EMBEDDER_MAX_TOKENS)


def test_it_cuts_a_long_sentence_only_between_words():
    sentence = adversarial()["one 5,000-word sentence"]
    chunks = chunk(document(sentence), max_tokens=64)
    for c in chunks:
        assert c.start == 0 or sentence[c.start - 1] == " "
        assert c.end == len(sentence) or sentence[c.end] == " "


def test_it_cuts_inside_a_word_only_when_that_word_is_over_the_limit():
    text = "Short words first. " + "-".join(["ab"] * 400) + " and short words after."
    chunks = chunk(document(text), max_tokens=64, overlap=0)
    inside = [c for c in chunks if c.start and text[c.start - 1] != " "]
    assert inside and all(text[c.start - 1] in "-ab" for c in inside)
    assert chunks[0].text == "Short words first."
    assert chunks[-1].text.endswith("and short words after.")


def test_it_packs_small_paragraphs_and_breaks_between_them():
    paragraphs = [f"Item {i} is ready." for i in range(300)]
    text = "\n\n".join(paragraphs)
    chunks = chunk(document(text), max_tokens=100, overlap=0)
    assert len(chunks) < len(paragraphs) / 5
    for c in chunks:
        assert c.text.startswith("Item ") and c.text.endswith("ready.")
    assert "\n\n".join(c.text for c in chunks) == text  # no overlap: exactly the paragraphs


def test_it_ends_chunks_at_sentence_ends_inside_a_long_paragraph():
    text = prose(random.Random(5), 120)
    chunks = chunk(document(text), max_tokens=120, overlap=0)
    assert all(c.text.endswith(".") and c.text[0].isupper() for c in chunks)
    overlapping = chunk(document(text), max_tokens=120)
    assert all(c.text.endswith(".") for c in overlapping)


def test_it_overlaps_consecutive_chunks_by_whole_sentences():
    text = prose(random.Random(11), 150, longest=12)
    chunks = chunk(document(text), max_tokens=150, overlap=0.2)
    for previous, following in itertools.pairwise(chunks):
        assert previous.start < following.start < previous.end, "no overlap"
        shared = text[following.start : previous.end]
        assert shared[0].isupper() and shared.endswith(".")  # whole sentences
        assert 5 <= real_count(shared) - 2 <= 30
    no_overlap = chunk(document(text), max_tokens=150, overlap=0)
    assert all(b.start > a.end for a, b in itertools.pairwise(no_overlap))
    assert len(no_overlap) < len(chunks)


def test_it_overlaps_by_words_when_no_whole_sentence_fits():
    text = adversarial()["one 5,000-word sentence"]
    chunks = chunk(document(text), max_tokens=100, overlap=0.2)
    for previous, following in itertools.pairwise(chunks):
        assert previous.start < following.start < previous.end
        assert 1 <= real_count(text[following.start : previous.end]) - 2 <= 20


def test_it_never_crosses_a_page_and_keeps_page_numbers():
    rng = random.Random(2)
    pages = ["\n".join(prose(rng, 4) for _ in range(6)) for _ in range(3)]
    extracted = extract(make_pdf(pages), "manual.pdf")
    chunks = chunk(extracted, max_tokens=96)
    assert_sound(extracted, chunks, 96)
    assert {c.page for c in chunks} == {1, 2, 3}
    assert [c.page for c in chunks] == sorted(c.page for c in chunks)


def test_it_carries_heading_paths_and_maps_offsets_back():
    extracted = extract((KB / "guide.md").read_bytes(), "guide.md")
    chunks = chunk(extracted, max_tokens=32)
    assert_sound(extracted, chunks, 32)
    limits = [c for c in chunks if "32 MB per file" in c.text]
    assert limits[0].heading_path == ("Atrium guide", "Uploading documents", "Limits")
    assert {c.heading_path for c in chunks} == {s.heading_path for s in extracted.sections}


def test_it_is_deterministic():
    text = "\n\n".join(prose(random.Random(seed), 8) for seed in range(40))
    first = chunk(document(text, text[:500]), max_tokens=80)
    again = chunk(document(text, text[:500]), max_tokens=80)
    assert first == again


def test_it_honours_another_token_counter():
    def count(text: str) -> int:  # a stricter counter: every word costs three
        return 3 * len(text.split()) + 2

    extracted = document(prose(random.Random(4), 60))
    chunks = chunk(extracted, max_tokens=50, overlap=0, count_tokens=count)
    assert all(c.token_count == count(c.text) <= 50 for c in chunks)
    assert all(extracted.text[c.start : c.end] == c.text for c in chunks)
    assert " ".join(c.text for c in chunks) == extracted.text  # no overlap needed to check loss


def test_it_gives_no_chunks_for_no_sections():
    assert chunk(Extracted("text", "t", [])) == []


def test_it_refuses_sections_whose_offsets_do_not_match_the_text():
    broken = Extracted("text", "t", [Section("Hello", None, (), 0), Section("World", None, (), 3)])
    with pytest.raises(ValueError, match="does not match"):
        chunk(broken)


def test_it_chunks_every_extracted_format_within_the_limit():
    for name in ("page.html", "guide.md", "notes.txt"):
        extracted = extract((KB / name).read_bytes(), name)
        assert_sound(extracted, chunk(extracted, max_tokens=24), 24)
    assert re.search(r"\w", chunk(extract(b"x", "x.txt"))[0].text)
