"""The chat page: a person's own conversations only, answers rendered as sanitised markdown
(what a model writes never becomes markup), citations that open the source passage."""

from __future__ import annotations

import re

import pytest
from django_tenants.utils import schema_context

from ai.conversations.services import conversation_start
from ai.models import Conversation, Message
from ai.rendering import render_answer
from retrieval.services import document_upload
from tests.conftest import client_on, host_of

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])

HOSTILE = (
    "<img src=x onerror=alert(1)><script>alert(2)</script> **bold** [1] "
    "[click](javascript:alert(3)) [data](data:text/html,hi) ![pixel](https://evil.example/p.png) "
    '<a href="https://evil.example" onclick="alert(4)">x</a> [safe](https://example.com)'
)


def test_a_member_starts_a_conversation_and_sees_only_their_own(world, alice_client, bob_client):
    page = alice_client.get("/chat/")
    assert page.status_code == 200 and "No conversations yet" in page.content.decode()
    response = alice_client.post("/chat/", {"title": "Pricing", "knowledge_base": "on"})
    with schema_context("t_acme"):
        conversation = Conversation.objects.get()
    assert conversation.user_id == world.alice.pk and conversation.knowledge_base
    assert response["Location"] == f"/chat/{conversation.public_id}/"
    page = alice_client.get(response["Location"]).content.decode()
    assert f'data-socket-path="/ws/chat/{conversation.public_id}/"' in page
    assert "Pricing" not in bob_client.get("/chat/").content.decode()
    assert bob_client.get(response["Location"]).status_code == 404
    charlie = client_on(host_of(world.acme), world.charlie)
    assert charlie.get(response["Location"]).status_code == 404
    globex_alice = client_on(host_of(world.globex), world.charlie)
    assert globex_alice.get(response["Location"]).status_code == 404


def test_model_output_is_rendered_inert_with_citations_linked(world, alice_client):
    document = document_upload(
        tenant=world.acme, user=world.alice, filename="r.md",
        data=b"# Refunds\n\nWithin 30 days.\n", enqueue=False,
    )  # fmt: skip
    citation = {
        "index": 1, "document_id": str(document.public_id), "title": "Refunds", "page": 2,
        "chunk_index": 0,
    }  # fmt: skip
    conversation = conversation_start(tenant=world.acme, user=world.alice)
    with schema_context("t_acme"):
        Message.objects.create(conversation=conversation, role="user", content="<b>hi</b>")
        Message.objects.create(
            conversation=conversation, role="assistant", content=HOSTILE, citations=[citation],
            model="gpt-4o-mini",
        )  # fmt: skip
    page = alice_client.get(f"/chat/{conversation.public_id}/").content.decode()
    log = page[page.index('id="chat-log"') : page.index('id="composer"')]
    assert "<strong>bold</strong>" in log
    assert not re.search(r"<(img|script)\b", log)
    tags = re.findall(r"<[^>]+>", log)  # real markup only (escaped text has no "<")
    assert not [tag for tag in tags if re.search(r"\bon\w+=|javascript:|data:", tag)]
    assert "&lt;script&gt;" in log and "&lt;img" in log  # shown as text, inert
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">safe</a>' in log
    assert "&lt;b&gt;hi&lt;/b&gt;" in log  # the question too is text
    (link,) = re.findall(r'<a class="citation" href="([^"]+)"', log)
    opened = alice_client.get(link)
    assert opened.status_code == 302 and opened["Location"].endswith("#chunk-0")
    other = client_on(host_of(world.globex), world.charlie)
    assert other.get(link).status_code == 404


def test_render_answer_keeps_citations_out_of_attributes():
    html = render_answer("[see [1]](https://example.com/[1]) and [1]", [
        {"index": 1, "document_id": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "title": "T",
         "page": None, "chunk_index": 3},
    ])  # fmt: skip
    assert html.count('class="citation"') == 2  # in the link text and the sentence, not in href
    assert 'href="https://example.com/%5B1%5D"' in html or 'href="https://example.com/[1]"' in html


def test_a_person_deletes_their_conversation(world, alice_client):
    conversation = conversation_start(tenant=world.acme, user=world.alice)
    response = alice_client.post(f"/chat/{conversation.public_id}/delete/")
    assert response.status_code == 302
    with schema_context("t_acme"):
        assert not Conversation.objects.exists()
