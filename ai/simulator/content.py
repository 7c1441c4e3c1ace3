"""Deterministic content: answers, word-ish tokens, prompt token counts and embedding vectors.

Nothing here is random: the same request always yields the same answer, counts and vectors, so
tests can assert exact values and benchmarks compare like with like.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import re
import struct
from collections.abc import Iterator
from typing import Any

ANSWER_PREFIX = ("Simulated", "answer:")
# Padding words, cycled, so that every default answer has exactly `answer_tokens` tokens.
FILLER = (
    *("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do"),
    *("eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua"),
)
DEFAULT_DIMENSIONS = 384
_TOKEN = re.compile(r"\s*\S+")


def texts_in(value: Any) -> Iterator[str]:
    """Yield every text in a message content: a string, a list of parts, or a part's `text` and
    nested `content` (Anthropic tool results), in order. Images and other parts yield nothing."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from texts_in(item)
    elif isinstance(value, dict):
        if isinstance(value.get("text"), str):
            yield value["text"]
        if "content" in value:
            yield from texts_in(value["content"])


def word_count(texts: Iterator[str] | list[str]) -> int:
    return sum(len(text.split()) for text in texts)


def prompt_tokens(*, messages: Any, system: Any = None) -> int:
    """Prompt tokens = whitespace-separated words across the system prompt and all messages."""
    return word_count(texts_in(system)) + word_count(texts_in(messages))


def last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return " ".join(texts_in(message.get("content")))
    return ""


def default_answer(*, prompt: str, answer_tokens: int) -> str:
    """ "Simulated answer: <first words of the prompt>", cut or padded to `answer_tokens` words."""
    words = [*ANSWER_PREFIX, *prompt.split()][:answer_tokens]
    padding = max(answer_tokens - len(words), 0)
    words += [FILLER[index % len(FILLER)] for index in range(padding)]
    return " ".join(words)


def tokenize(text: str) -> list[str]:
    """Word-ish tokens that concatenate back to the text: each carries its leading whitespace,
    like real model tokens (" world")."""
    return _TOKEN.findall(text.strip())


def embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """Normalise an embeddings `input` (a string, strings, token ids or lists of token ids) to
    (text to hash, prompt tokens) pairs."""
    if isinstance(value, str):
        return [(value, len(value.split()))]
    if isinstance(value, list) and value and all(isinstance(item, int) for item in value):
        return [(" ".join(map(str, value)), len(value))]
    if isinstance(value, list):
        pairs: list[tuple[str, int]] = []
        for item in value:
            pairs.extend(embedding_inputs(item))
        return pairs
    return []


def embedding_vector(text: str, *, dimensions: int) -> list[float]:
    """A unit vector derived from a hash of the text: equal texts give equal vectors."""
    return list(_unit_vector(text, dimensions))


# Benchmarks embed the same texts over and over; the vector is a pure function of its inputs.
@functools.lru_cache(maxsize=4096)
def _unit_vector(text: str, dimensions: int) -> tuple[float, ...]:
    digest = hashlib.shake_256(text.encode()).digest(2 * dimensions)
    raw = [value / 32767.5 - 1.0 for value in struct.unpack(f"<{dimensions}H", digest)]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return tuple(value / norm for value in raw)


def encode_base64(vector: list[float]) -> str:
    """OpenAI's `encoding_format="base64"`: little-endian float32, which the SDK asks for by
    default and decodes itself."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
