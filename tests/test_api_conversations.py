"""Conversations over the REST API: start, send (the answer in the response, history trimmed to
a budget, knowledge-base answers with citations), list, delete; one generation at a time;
idempotent retries billed once; failures kept as failed; token limits; tenant isolation."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from ai.gateway.ledger_writer import usage_flush
from ai.models import Conversation, Message
from billing.models import UsageRecord
from tests.conftest import host_of
from tests.test_api import api, key_for

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])

JSON = "application/json"


@pytest.fixture
def acme(world, sim):
    return api(host_of(world.acme), key_for(world.acme, scopes=["chat", "documents:write"]))


def start(client, **body) -> str:
    response = client.post("/api/v1/conversations", body, content_type=JSON)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def send(client, conversation_id: str, content: str, **headers):
    return client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        {"content": content},
        content_type=JSON,
        **headers,
    )


def chat_requests(sim) -> list[dict]:
    return [r["body"] for r in sim.requests("/v1/chat/completions")]


def usage_rows(tenant) -> int:
    """Ledger rows of this tenant's conversation answers (by their request ids: rows other
    tests committed do not count)."""
    usage_flush()
    with schema_context(tenant.schema_name):
        request_ids = list(
            Message.objects.filter(role="assistant").values_list("request_id", flat=True)
        )
    return UsageRecord.objects.filter(tenant=tenant, request_id__in=request_ids).count()


def test_a_conversation_answers_with_its_history_and_lists_its_messages(world, acme, sim):
    conversation_id = start(acme, title="Pricing")
    first = send(acme, conversation_id, "What plans do you offer?")
    assert first.status_code == 201
    answer = first.json()["answer"]
    assert answer["status"] == "complete" and answer["content"].startswith("Simulated answer")
    assert answer["model"] == "gpt-4o-mini" and answer["output_tokens"] > 0
    assert first.json()["question"]["content"] == "What plans do you offer?"

    send(acme, conversation_id, "And the cheapest?")
    sent = chat_requests(sim)[-1]["messages"]
    assert [m["role"] for m in sent if m["role"] != "system"] == ["user", "assistant", "user"]
    assert sent[-1]["content"] == "And the cheapest?"

    listing = acme.get(f"/api/v1/conversations/{conversation_id}/messages").json()
    assert [m["role"] for m in listing["results"]] == ["user", "assistant"] * 2
    conversations = acme.get("/api/v1/conversations").json()["results"]
    assert [c["id"] for c in conversations] == [conversation_id]
    assert usage_rows(world.acme) == 2


def test_history_is_trimmed_to_the_token_budget_oldest_turns_first(world, acme, sim, settings):
    conversation_id = start(acme)
    for number in range(4):
        send(acme, conversation_id, f"Question number {number} " + "word " * 60)
    settings.AI_HISTORY_TOKENS = 200
    send(acme, conversation_id, "The last question")
    sent = [m for m in chat_requests(sim)[-1]["messages"] if m["role"] != "system"]
    assert sent[-1]["content"] == "The last question"
    assert sent[0]["role"] == "user" and len(sent) < 9
    assert not any("number 0" in m["content"] for m in sent)


def test_a_knowledge_base_conversation_cites_the_tenants_own_documents(
    world, acme, sim, django_capture_on_commit_callbacks
):
    text = b"# Refund policy\n\nAnnual plans can be refunded within 30 days of purchase.\n"
    globex = api(host_of(world.globex), key_for(world.globex, scopes=["documents:write"]))
    with django_capture_on_commit_callbacks(execute=True):
        mine = acme.post("/api/v1/documents", {"file": SimpleUploadedFile("r.md", text)})
        globex.post("/api/v1/documents", {"file": SimpleUploadedFile("r.md", text)})
    sim.configure(answer="Annual plans are refunded within 30 days [1].")
    conversation_id = start(acme, knowledge_base=True)
    answer = send(acme, conversation_id, "Can I get a refund on an annual plan?").json()["answer"]
    (citation,) = answer["citations"]
    assert citation["index"] == 1 and citation["document_id"] == mine.json()["id"]
    assert citation["title"] == "Refund policy"
    context = chat_requests(sim)[-1]["messages"][0]["content"]
    assert "refunded within 30 days" in context  # the passage went as quoted data


def test_an_idempotent_retry_returns_the_first_answer_and_is_billed_once(world, acme, sim):
    conversation_id = start(acme)
    first = send(acme, conversation_id, "Hello", HTTP_IDEMPOTENCY_KEY="msg-1")
    retry = send(acme, conversation_id, "Hello", HTTP_IDEMPOTENCY_KEY="msg-1")
    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert len(chat_requests(sim)) == 1 and usage_rows(world.acme) == 1
    with schema_context("t_acme"):
        assert Message.objects.count() == 2


def test_a_second_send_while_one_generates_is_refused(world, acme):
    conversation_id = start(acme)
    with schema_context("t_acme"):
        conversation = Conversation.objects.get(public_id=conversation_id)
        Message.objects.create(conversation=conversation, role="assistant", status="generating")
    response = send(acme, conversation_id, "Are you there?")
    assert response.status_code == 409 and "still being generated" in response.json()["detail"]
    with schema_context("t_acme"):
        assert conversation.messages.count() == 1  # nothing half-stored


def test_a_failed_answer_is_kept_with_its_reason_and_reported(world, acme, sim, settings):
    settings.AI_MAX_ATTEMPTS_PER_MODEL = 1
    sim.script(*[{"fault": "status", "code": 503}] * 6)
    conversation_id = start(acme)
    response = send(acme, conversation_id, "Hello?")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    messages = acme.get(f"/api/v1/conversations/{conversation_id}/messages").json()["results"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "failed"),
    ]
    assert messages[1]["error"]
    sim.reset()
    assert send(acme, conversation_id, "Again?").status_code == 201  # not stuck "generating"
    # A request the provider rejects as invalid is the caller's 400 (not a 5xx to retry).
    sim.script({"fault": "status", "code": 400})
    rejected = send(acme, conversation_id, "Too long?")
    assert rejected.status_code == 400 and "refused" in rejected.json()["detail"]


def test_the_token_limit_refuses_with_retry_after(world, acme, sim, settings):
    limits = settings.API_RATE_LIMITS
    settings.API_RATE_LIMITS = {
        tier: {**values, "key_tokens_per_minute": 1500} for tier, values in limits.items()
    }
    conversation_id = start(acme)
    assert send(acme, conversation_id, "Hello").status_code == 201  # charged, then settled
    assert send(acme, conversation_id, "Hello again").status_code == 201
    response = send(acme, conversation_id, "And again " + "word " * 600)
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1


def test_other_tenants_and_browser_conversations_stay_out_of_reach(world, acme, sim):
    conversation_id = start(acme)
    send(acme, conversation_id, "Secret plans")
    with schema_context("t_acme"):
        Conversation.objects.create(title="Alice's own", user_id=world.alice.pk)
    assert [c["title"] for c in acme.get("/api/v1/conversations").json()["results"]] == [
        "Secret plans"
    ]
    globex = api(host_of(world.acme), key_for(world.globex, scopes=["chat"]))
    assert globex.get(f"/api/v1/conversations/{conversation_id}").status_code == 401
    globex = api("localhost", key_for(world.globex, scopes=["chat"]))
    for response in (
        globex.get(f"/api/v1/conversations/{conversation_id}"),
        globex.get(f"/api/v1/conversations/{conversation_id}/messages"),
        send(globex, conversation_id, "Let me in"),
        globex.delete(f"/api/v1/conversations/{conversation_id}"),
    ):
        assert response.status_code == 404
    assert globex.get("/api/v1/conversations").json()["results"] == []
    with schema_context("t_acme"):
        assert Message.objects.count() == 2
    no_chat = api(host_of(world.acme), key_for(world.acme, scopes=["search"]))
    assert no_chat.get("/api/v1/conversations").status_code == 403
    assert acme.delete(f"/api/v1/conversations/{conversation_id}").status_code == 204
    with schema_context("t_acme"):
        assert not Message.objects.exists()


def test_conversation_and_message_lists_take_a_limit(world, acme, sim):
    """`limit` pages conversations and messages like every other list; a bad one is a 400."""
    ids = [start(acme, title=f"C{n}") for n in range(3)]
    send(acme, ids[0], "One")
    page = acme.get("/api/v1/conversations?limit=2").json()
    assert len(page["results"]) == 2 and page["next"]
    assert [c["id"] for c in page["results"]] == [ids[0], ids[2]]  # the last active first
    messages = acme.get(f"/api/v1/conversations/{ids[0]}/messages?limit=1").json()
    assert [m["role"] for m in messages["results"]] == ["user"] and messages["next"]
    for bad in ("0", "201", "x"):
        response = acme.get(f"/api/v1/conversations?limit={bad}")
        assert response.status_code == 400 and "limit" in response.json()["errors"]
