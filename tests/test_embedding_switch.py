"""Switching a knowledge base's embedding model: the documents are re-embedded in the background
while the current index keeps serving, then the new model takes over; uploads during the switch
get both; cancel and failure keep the current model; only admins switch; other tenants untouched.

The simulator plays OpenAI, so `text-embedding-3-small` (asked for 384 dimensions) is real HTTP
through the official SDK; its vectors are hashes, so searches here match on words."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django_tenants.utils import schema_context

from retrieval import reindex, services
from retrieval.models import Chunk, Document, KnowledgeBase
from retrieval.reindex import (
    embedding_switch_cancel,
    embedding_switch_start,
    index_prune,
    reembed_step,
)
from retrieval.selectors import document_chunks, embedding_models_for, knowledge_search
from saas.audit.models import AuditEvent
from tests.conftest import client_on, host_of
from tests.test_knowledge_base import OFFICES, REFUNDS

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])

NEXT = "text-embedding-3-small"


@pytest.fixture
def acme_kb(world, sim, django_capture_on_commit_callbacks):
    """acme with two ready documents; globex with one."""
    with django_capture_on_commit_callbacks(execute=True):
        for name, data in (("refunds.md", REFUNDS), ("offices.md", OFFICES)):
            services.document_upload(tenant=world.acme, user=world.alice, filename=name, data=data)
        services.document_upload(
            tenant=world.globex, user=world.charlie, filename="refunds.md", data=REFUNDS
        )
    sim.clear()
    return world


def start(world, model: str = NEXT, capture=None) -> None:
    """Start the switch without running its task (the test drives the steps)."""
    with capture(execute=False):
        embedding_switch_start(tenant=world.acme, user=world.alice, model=model)


def models_of_chunks(schema: str) -> dict[str, int]:
    with schema_context(schema):
        return {
            model: Chunk.objects.filter(embedding_model=model).count()
            for model in Chunk.objects.values_list("embedding_model", flat=True).distinct()
        }


def knowledge_base(schema: str = "t_acme") -> KnowledgeBase:
    with schema_context(schema):
        return KnowledgeBase.objects.get()


def embed_requests(sim) -> list[dict]:
    return [r["body"] for r in sim.requests("/v1/embeddings")]


def test_the_old_index_serves_until_every_document_is_re_embedded_then_the_new_one_does(
    acme_kb, sim, django_capture_on_commit_callbacks
):
    world = acme_kb
    assert NEXT in embedding_models_for(tenant=world.acme)
    serving_chunks = models_of_chunks("t_acme")["local-minilm"]
    start(world, capture=django_capture_on_commit_callbacks)
    kb = knowledge_base()
    assert (kb.embedding_model, kb.next_embedding_model) == ("local-minilm", NEXT)
    assert (kb.switch_documents_done, kb.switch_documents_total) == (0, 2)

    assert reembed_step(tenant=world.acme, budget_s=0) is False  # one document, then stop
    kb = knowledge_base()
    assert (kb.switch_documents_done, kb.switch_documents_total) == (1, 2)
    (request,) = embed_requests(sim)  # one batch, shortened to the index's width
    assert (request["model"], request["dimensions"]) == (NEXT, 384)
    sim.clear()
    hits = knowledge_search(tenant=world.acme, query="refunded within 30 days")
    assert hits[0].title == "Refund policy"
    assert embed_requests(sim) == []  # the query was embedded by the serving local model

    assert reembed_step(tenant=world.acme, budget_s=60) is True
    kb = knowledge_base()
    assert (kb.embedding_model, kb.next_embedding_model) == (NEXT, "")
    assert models_of_chunks("t_acme") == {"local-minilm": serving_chunks, NEXT: serving_chunks}
    sim.clear()
    hits = knowledge_search(tenant=world.acme, query="Montreal office")
    assert hits[0].title == "Office locations"
    (query,) = embed_requests(sim)
    assert query["model"] == NEXT and query["input"] == ["Montreal office"]
    with schema_context("t_acme"):
        assert set(Document.objects.values_list("embedding_model", flat=True)) == {NEXT}
        document = Document.objects.get(title="Office locations")
    shown = document_chunks(tenant=world.acme, document=document)  # the document's page
    assert {c.embedding_model for c in shown} == {NEXT}

    assert index_prune(tenant=world.acme) == serving_chunks  # the old vectors, a minute later
    assert models_of_chunks("t_acme") == {NEXT: serving_chunks}
    with schema_context("t_acme"):
        assert set(Chunk.objects.values_list("embedding_dimensions", flat=True)) == {384}
        actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"knowledge_base.model_switch_started", "knowledge_base.model_switched"} <= actions

    # globex's knowledge base never moved.
    assert knowledge_base("t_globex").embedding_model == "local-minilm"
    assert set(models_of_chunks("t_globex")) == {"local-minilm"}
    assert knowledge_search(tenant=world.globex, query="refunded within 30 days")


def test_the_task_re_embeds_and_switches_in_the_background(
    acme_kb, alice_client, django_capture_on_commit_callbacks
):
    """Through the documents page: the form queues the task (eager here), which finishes."""
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post("/documents/embedding-model/", {"model": NEXT})
    assert response.status_code == 302
    kb = knowledge_base()
    assert (kb.embedding_model, kb.next_embedding_model, kb.switch_error) == (NEXT, "", "")
    page = alice_client.get("/documents/").content.decode()
    assert f"<strong>{NEXT}</strong> embeddings" in page


def test_an_upload_during_a_switch_is_embedded_with_both_models(
    acme_kb, alice_client, django_capture_on_commit_callbacks
):
    world = acme_kb
    start(world, capture=django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        document = services.document_upload(
            tenant=world.acme,
            user=world.alice,
            filename="more.md",
            data=b"# Parking\n\nBikes only.",
        )
    with schema_context("t_acme"):
        models = set(
            Chunk.objects.filter(document=document).values_list("embedding_model", flat=True)
        )
    assert models == {"local-minilm", NEXT}
    page = alice_client.get("/documents/").content.decode()
    assert "Re-embedding with <strong>text-embedding-3-small</strong>" in page
    assert "1 of 2 documents" in page or "0 of 2 documents" in page


def test_a_switch_that_starts_while_a_document_is_embedded_is_caught_at_the_write(
    acme_kb, monkeypatch, django_capture_on_commit_callbacks
):
    world = acme_kb
    embed = services.embed_texts
    calls: list[str] = []

    def embed_then_switch(tenant, document, texts, model, **kwargs):
        calls.append(model)
        if len(calls) == 1:  # an admin starts the switch while this upload is being embedded
            start(world, capture=django_capture_on_commit_callbacks)
        return embed(tenant, document, texts, model, **kwargs)

    with django_capture_on_commit_callbacks(execute=True):
        document = services.document_upload(
            tenant=world.acme, user=world.alice, filename="late.md",
            data=b"# Late\n\nArrived late.", enqueue=False,
        )  # fmt: skip
    monkeypatch.setattr(services, "embed_texts", embed_then_switch)
    services.document_ingest(tenant=world.acme, document_id=document.pk)  # the worker's part
    assert calls == ["local-minilm", NEXT]
    with schema_context("t_acme"):
        document.refresh_from_db()
        models = set(
            Chunk.objects.filter(document=document).values_list("embedding_model", flat=True)
        )
    assert document.status == "ready" and models == {"local-minilm", NEXT}


def test_cancel_keeps_the_current_model_and_discards_the_new_vectors(
    acme_kb, alice_client, django_capture_on_commit_callbacks
):
    world = acme_kb
    start(world, capture=django_capture_on_commit_callbacks)
    reembed_step(tenant=world.acme, budget_s=0)
    assert NEXT in models_of_chunks("t_acme")
    with django_capture_on_commit_callbacks(execute=True):  # runs the prune task
        response = alice_client.post("/documents/embedding-model/", {"action": "cancel"})
    assert response.status_code == 302
    kb = knowledge_base()
    assert (kb.embedding_model, kb.next_embedding_model) == ("local-minilm", "")
    assert set(models_of_chunks("t_acme")) == {"local-minilm"}
    assert reembed_step(tenant=world.acme, budget_s=60) is True  # a late task does nothing
    assert set(models_of_chunks("t_acme")) == {"local-minilm"}
    with pytest.raises(ValidationError, match="No model switch is running"):
        embedding_switch_cancel(tenant=world.acme, user=world.alice)


def test_a_model_that_refuses_abandons_the_switch_with_a_reason_and_search_goes_on(
    acme_kb, sim, alice_client, django_capture_on_commit_callbacks
):
    sim.script({"fault": "status", "code": 400, "message": "dimensions not supported"})
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post("/documents/embedding-model/", {"model": NEXT})
    kb = knowledge_base()
    assert (kb.embedding_model, kb.next_embedding_model) == ("local-minilm", "")
    assert kb.switch_error.startswith(f"Switching to {NEXT} stopped:")
    assert set(models_of_chunks("t_acme")) == {"local-minilm"}
    assert "stopped:" in alice_client.get("/documents/").content.decode()
    hits = knowledge_search(tenant=acme_kb.acme, query="refunded within 30 days")
    assert hits[0].title == "Refund policy"


def test_only_admins_switch_and_only_to_models_that_fit_the_index(
    acme_kb, bob_client, alice_client, django_capture_on_commit_callbacks
):
    world = acme_kb
    page = bob_client.get("/documents/").content.decode()
    assert "Change the embedding model" not in page
    assert bob_client.post("/documents/embedding-model/", {"model": NEXT}).status_code == 403
    page = alice_client.get("/documents/").content.decode()
    assert "Change the embedding model" in page and f'value="{NEXT}"' in page
    for model, message in (
        ("gpt-4o", "not available to you"),  # a chat model
        ("local-minilm", "already uses"),
    ):
        with pytest.raises(ValidationError, match=message):
            embedding_switch_start(tenant=world.acme, user=world.alice, model=model)
    start(world, capture=django_capture_on_commit_callbacks)
    with pytest.raises(ValidationError, match="is running"):
        embedding_switch_start(tenant=world.acme, user=world.alice, model=NEXT)
    assert knowledge_base("t_globex").next_embedding_model == ""
    # charlie (globex's owner) is no member of acme: refused on acme's host.
    charlie = client_on(host_of(world.acme), world.charlie)
    assert charlie.post("/documents/embedding-model/", {"action": "cancel"}).status_code in (
        403,
        404,
    )
    assert knowledge_base().next_embedding_model == NEXT


def test_without_an_openai_key_only_the_local_model_is_offered(world, alice_client):
    assert embedding_models_for(tenant=world.acme) == ["local-minilm"]
    assert "Change the embedding model" not in alice_client.get("/documents/").content.decode()


def test_a_document_deleted_mid_switch_does_not_block_it(
    acme_kb, alice_client, django_capture_on_commit_callbacks
):
    world = acme_kb
    start(world, capture=django_capture_on_commit_callbacks)
    with schema_context("t_acme"):
        offices = Document.objects.get(title="Office locations")
    with django_capture_on_commit_callbacks(execute=True):
        services.document_delete(tenant=world.acme, user=world.alice, document=offices)
    assert reindex.reembed_step(tenant=world.acme, budget_s=60) is True
    assert knowledge_base().embedding_model == NEXT
