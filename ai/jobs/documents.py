"""Jobs over knowledge-base documents: `summarize` (a summary of each document) and `classify`
(one of the job's labels for each document). One item per document; its prompt is built at
submission from the document's stored text (retrieval.selectors.document_texts), cut to a
character budget and quoted as untrusted data (retrieval.injection.quote_as_data), so the
work itself is that of any job, direct or in a provider batch. A model's answer becomes the
item's outcome through `answer_outcome`, for direct calls and batch results alike: for
classify, the label it names, or a failure saying what it said instead."""

from __future__ import annotations

import unicodedata
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError

from ai.gateway.routing import tier_of
from ai.gateway.tokens import estimate_tokens
from ai.models import Job, JobItem
from retrieval.injection import quote_as_data
from retrieval.models import Document
from retrieval.selectors import document_texts, documents_by_public_id
from tenants.models import Tenant

DOCUMENT_KINDS = (Job.Kind.SUMMARIZE, Job.Kind.CLASSIFY)
MIN_LABELS, MAX_LABELS = 2, 50
LABEL_MAX_CHARS = 100
INSTRUCTIONS_MAX_CHARS = 4000
# Characters per prompt token assumed when fitting a document to the plan's prompt limit:
# prose runs about 4 (word pieces), so a document cut to fit is rarely refused as too long.
CHARS_PER_TOKEN = 3
PROMPT_MARGIN_TOKENS = 200  # the canary, the message framing, estimation error
MIN_DOCUMENT_CHARS = 1000

SUMMARIZE_TASK = (
    "Summarize the document below: its main points, facts and conclusions, in a few short "
    "paragraphs, in the document's language."
)
SUMMARIZE_REMINDER = "Now write the summary of the document above."
CLASSIFY_TASK = (
    "Classify the document below with exactly one of these labels:\n{labels}\n"
    "Reply with that label alone, exactly as written above: no explanation, no other text."
)
CLASSIFY_REMINDER = "Now reply with the one label, from the list above, that fits the document."
TRUNCATED = (
    "(The document is longer: only its first {chars} characters are quoted above. Base your "
    "answer on them.)"
)


@dataclass(frozen=True)
class DocumentPrompt:
    document_id: uuid.UUID  # public id
    prompt: str
    truncated: bool


def label_key(text: str) -> str:
    """What labels (and answers) are compared by: case, punctuation, symbols and whitespace
    ignored ("**Billing.**" and "billing" are the same; so are "e-mail" and "E mail")."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(char)[0] in "PS" else char for char in text)
    return " ".join(text.split())


def label_match(answer: str, labels: list[str]) -> str | None:
    """The label (as the job spells it) that `answer` names, or None."""
    key = label_key(answer)
    return next((label for label in labels if label_key(label) == key), None) if key else None


def answer_outcome(job: Job, text: str) -> tuple[str, dict[str, object]]:
    """How a model's answer for one of the job's items finishes it: its status and fields.
    Prompts and summaries: succeeded, the answer as it is. Classify: succeeded with the label
    it names (as `output` and `label`), or failed, saying what the model answered. Either way
    the call was made and is metered: the caller records its tokens and cost with this."""
    if job.kind != Job.Kind.CLASSIFY:
        return JobItem.Status.SUCCEEDED, {"output": text}
    label = label_match(text, list(job.labels))
    if label is not None:
        return JobItem.Status.SUCCEEDED, {"output": label, "label": label}
    said = " ".join(text.split())
    if len(said) > 120:
        said = f"{said[:119]}…"
    error = (
        f'The model answered "{said}", which is none of the job\'s labels.'
        if said
        else "The model gave an empty answer, not one of the job's labels."
    )
    return JobItem.Status.FAILED, {"output": "", "error": error}


def labels_check(labels: list[str]) -> list[str]:
    """The labels, whitespace collapsed; ValidationError (per field: `labels`, `labels.3`)
    unless there are 2 to 50 of them, each with text, at most 100 characters, and no two the
    same once case and punctuation are ignored (an answer could not tell them apart)."""
    errors: dict[str, list[str]] = {}
    if not MIN_LABELS <= len(labels) <= MAX_LABELS:
        errors["labels"] = [
            f"Send {MIN_LABELS} to {MAX_LABELS} labels (this job has {len(labels)})."
        ]
    cleaned = [" ".join(label.split()) for label in labels]  # one line each, in the prompt
    seen: dict[str, int] = {}
    for index, label in enumerate(cleaned[:MAX_LABELS]):
        key = label_key(label)
        if not key:
            errors[f"labels.{index}"] = ["Give the label a name (letters or digits)."]
        elif len(label) > LABEL_MAX_CHARS:
            errors[f"labels.{index}"] = [f"Use at most {LABEL_MAX_CHARS} characters."]
        elif key in seen:
            errors[f"labels.{index}"] = [
                f"The same label as labels.{seen[key]} (case and punctuation aside)."
            ]
        else:
            seen[key] = index
    if errors:
        raise ValidationError(errors)
    return cleaned


def documents_check(*, tenant: Tenant, document_ids: list[uuid.UUID]) -> list[Document]:
    """The tenant's documents by public id, in the order given. ValidationError, per field
    (`documents`, `documents.3`), for no ids, too many, duplicates, and ids that are not the
    tenant's ready documents (another tenant's id is answered exactly like a missing one)."""
    errors: dict[str, list[str]] = {}
    if not document_ids:
        errors["documents"] = ["Send at least one document id."]
    elif len(document_ids) > settings.JOBS_MAX_ITEMS:
        errors["documents"] = [
            f"A job takes at most {settings.JOBS_MAX_ITEMS} documents; this one has "
            f"{len(document_ids)}. Split it into several jobs."
        ]
    first_at: dict[uuid.UUID, int] = {}
    for index, document_id in enumerate(document_ids):
        if document_id in first_at:
            errors[f"documents.{index}"] = [
                f"The same document as documents.{first_at[document_id]}."
            ]
        first_at.setdefault(document_id, index)
    if errors:
        raise ValidationError(errors)
    found = documents_by_public_id(tenant=tenant, public_ids=document_ids)
    for index, document_id in enumerate(document_ids):
        document = found.get(document_id)
        if document is None:
            errors[f"documents.{index}"] = ["No such document in this knowledge base."]
        elif document.status != Document.Status.READY:
            errors[f"documents.{index}"] = [
                f"This document is not ready (it is {document.status}): only indexed "
                "documents can be summarized or classified."
            ]
    if errors:
        raise ValidationError(errors)
    return [found[document_id] for document_id in document_ids]


def document_prompts(
    *,
    tenant: Tenant,
    kind: str,
    documents: list[Document],
    labels: list[str],
    instructions: str,
    system: str,
) -> list[DocumentPrompt]:
    """One prompt per document (from `documents_check`), in order: the task, the document's
    text quoted as data (cut to `document_budget`, and then saying so), the task again in
    short. ValidationError (`documents.3`) for a document without text."""
    task = _task(kind, labels, instructions)
    reminder = CLASSIFY_REMINDER if kind == Job.Kind.CLASSIFY else SUMMARIZE_REMINDER
    budget = document_budget(tenant=tenant, overhead=f"{system}\n{task}\n{reminder}")
    texts = document_texts(
        tenant=tenant, document_ids=[document.pk for document in documents], max_chars=budget
    )
    errors: dict[str, list[str]] = {}
    prompts: list[DocumentPrompt] = []
    for index, document in enumerate(documents):
        text = texts.get(document.pk)
        if text is None or not text.text.strip():
            errors[f"documents.{index}"] = ["This document has no text to work on."]
            continue
        parts = [task, quote_as_data(text.text, title=document.title)]
        if text.truncated:
            parts.append(TRUNCATED.format(chars=len(text.text)))
        parts.append(reminder)
        prompts.append(DocumentPrompt(document.public_id, "\n\n".join(parts), text.truncated))
    if errors:
        raise ValidationError(errors)
    return prompts


def document_budget(*, tenant: Tenant, overhead: str) -> int:
    """Characters of a document's text one item may quote: JOBS_DOCUMENT_MAX_CHARS, or less
    so the prompt fits the plan's prompt-token limit with the rest of it (`overhead`)."""
    limit = settings.AI_TIER_LIMITS[tier_of(tenant)]["max_prompt_tokens"]
    tokens_left = limit - estimate_tokens(overhead) - PROMPT_MARGIN_TOKENS
    fits = max(MIN_DOCUMENT_CHARS, tokens_left * CHARS_PER_TOKEN)
    return min(settings.JOBS_DOCUMENT_MAX_CHARS, fits)


def _task(kind: str, labels: list[str], instructions: str) -> str:
    if kind == Job.Kind.CLASSIFY:
        task = CLASSIFY_TASK.format(labels="\n".join(f"- {label}" for label in labels))
    else:
        task = SUMMARIZE_TASK
    instructions = instructions.strip()
    return f"{task}\n\n{instructions}" if instructions else task
