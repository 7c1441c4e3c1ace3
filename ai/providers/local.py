"""The built-in `local` provider: works with no keys and no network.

Chat answers are *extractive*: the sentences of the supplied context that best match the
question, quoted with their citation numbers; nothing is generated, and the product labels
them "local extractive". Embeddings come from all-MiniLM-L6-v2 run with onnxruntime."""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import AsyncIterator

from ai.providers.base import (
    ChatRequest,
    ChatResponse,
    ContextDoc,
    Credentials,
    EmbedResponse,
    ProviderError,
    StreamEnd,
    StreamEvent,
    TextDelta,
    Usage,
)

LABEL = "local extractive"
NO_CONTEXT = (
    "Local extractive mode answers only from your documents, and none were provided for this "
    "question. Add documents to the knowledge base, or ask an administrator to configure a "
    "model provider for generative answers."
)
NO_MATCH = "The documents provided do not seem to answer this question."
MAX_SENTENCES = 3

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n{2,}|\n(?=[-*#])")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def _words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS]


def _sentences(doc: ContextDoc) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(doc.text) if len(s.strip()) > 2]


def extractive_answer(question: str, context: list[ContextDoc]) -> str:
    """The best-matching context sentences (at most three, in document order) with [n] markers
    naming the context item they come from."""
    if not context:
        return NO_CONTEXT
    candidates = [
        (doc_index, position, sentence)
        for doc_index, doc in enumerate(context)
        for position, sentence in enumerate(_sentences(doc))
    ]
    wanted = set(_words(question))
    if not candidates or not wanted:
        return NO_MATCH
    document_frequency = Counter(w for *_, s in candidates for w in set(_words(s)))

    def score(sentence: str) -> float:
        words = set(_words(sentence))
        overlap = words & wanted
        idf = sum(math.log(1 + len(candidates) / document_frequency[w]) for w in overlap)
        return idf / math.sqrt(len(words) + 1)

    ranked = sorted(candidates, key=lambda c: score(c[2]), reverse=True)
    best = [c for c in ranked[:MAX_SENTENCES] if score(c[2]) > 0]
    if not best:
        return NO_MATCH
    best.sort(key=lambda c: (c[0], c[1]))
    return " ".join(f"{sentence} [{doc_index + 1}]" for doc_index, _, sentence in best)


def _question(request: ChatRequest) -> str:
    users = [m["content"] for m in request.messages if m.get("role") == "user"]
    return users[-1] if users else ""


def _usage(request: ChatRequest, answer: str) -> Usage:
    from ai.gateway.tokens import estimate_tokens

    # The gateway already put the quoted context into the system prompt.
    prompt = "\n".join([request.system, *(m["content"] for m in request.messages)])
    return Usage(estimate_tokens(prompt), estimate_tokens(answer), 0, estimated=True)


class LocalAdapter:
    name = "local"

    async def complete(self, request: ChatRequest, credentials: Credentials) -> ChatResponse:
        answer = extractive_answer(_question(request), request.context)
        return ChatResponse(answer, _usage(request, answer))

    async def stream(
        self, request: ChatRequest, credentials: Credentials
    ) -> AsyncIterator[StreamEvent]:
        answer = extractive_answer(_question(request), request.context)
        words = answer.split(" ")
        for index, word in enumerate(words):
            yield TextDelta(word if index == 0 else f" {word}")
            await asyncio.sleep(0)  # let cancellation and other streams in between words
        yield StreamEnd(_usage(request, answer))

    async def embed(
        self,
        model: str,
        texts: list[str],
        credentials: Credentials,
        *,
        timeout: float,
        dimensions: int | None = None,
    ) -> EmbedResponse:
        from ai.embedding.minilm import InputTooLong, get_embedder

        embedder = get_embedder()
        if dimensions and dimensions != embedder.dimensions:
            raise ProviderError(
                "bad_request",
                f"{model} gives {embedder.dimensions}-dimensional vectors, not {dimensions}.",
                retriable=False,
            )
        try:
            # CPU-bound: run it off the event loop. Over-long texts are refused, not cut.
            vectors = await asyncio.to_thread(embedder.embed, texts)
        except InputTooLong as error:
            raise ProviderError("bad_request", str(error), retriable=False) from None
        tokens = sum(embedder.count_tokens_batch(texts))
        return EmbedResponse(vectors.tolist(), Usage(tokens, 0))
