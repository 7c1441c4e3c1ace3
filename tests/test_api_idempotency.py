"""Idempotency-Key on API POSTs: a retry returns the first response and stores nothing twice; the
same key with another request is refused; a key still running answers 409; keys are per API
key (and so per tenant); a failed first attempt keeps nothing."""

from __future__ import annotations

import httpx2
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from ai.gateway.ledger_writer import usage_flush
from billing.models import UsageRecord
from retrieval import api as retrieval_api
from retrieval.models import Document
from saas.audit.models import AuditEvent
from tenants.services.api_keys import api_key_create
from tests.conftest import host_of
from tests.test_api import REFUNDS, api, key_for

DB = pytest.mark.django_db(databases=["default", "ledger"])

OFFICES = b"# Offices\n\nOur headquarters are in Lisbon.\n"


@pytest.fixture
def post(django_capture_on_commit_callbacks):
    def send(client, key: str | None, data: bytes = REFUNDS, name: str = "refunds.md"):
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                "/api/v1/documents", {"file": SimpleUploadedFile(name, data)}, **headers
            )

    return send


def acme_uploads() -> tuple[int, int]:
    with schema_context("t_acme"):
        return (
            Document.objects.count(),
            AuditEvent.objects.filter(action="document.uploaded").count(),
        )


@DB
def test_a_retry_with_the_same_key_returns_the_first_response_and_stores_once(world, post):
    client = api(host_of(world.acme), key_for(world.acme))
    first = post(client, "upload-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first
    retry = post(client, "upload-1")
    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert acme_uploads() == (1, 1)
    # Without a key the same file is a duplicate, as always.
    assert post(client, None).status_code == 400


@DB
def test_the_same_key_with_another_request_is_refused(world, post):
    client = api(host_of(world.acme), key_for(world.acme))
    post(client, "upload-1")
    response = post(client, "upload-1", data=OFFICES, name="offices.md")
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert "different request" in response.json()["detail"]
    assert acme_uploads() == (1, 1)


@DB
def test_keys_belong_to_one_api_key_and_one_tenant(world, post):
    acme = api(host_of(world.acme), key_for(world.acme))
    other_acme_key = api(host_of(world.acme), key_for(world.acme))
    globex = api(host_of(world.globex), key_for(world.globex))
    assert post(acme, "shared").status_code == 201
    assert post(other_acme_key, "shared", data=OFFICES, name="o.md").status_code == 201
    response = post(globex, "shared")  # globex's first use of the key: runs, in globex
    assert response.status_code == 201 and "Idempotent-Replayed" not in response
    with schema_context("t_globex"):
        assert Document.objects.count() == 1
    assert acme_uploads() == (2, 2)


@DB
def test_a_retry_while_the_first_runs_gets_409_and_a_failed_first_keeps_nothing(
    world, post, monkeypatch
):
    client = api(host_of(world.acme), key_for(world.acme))
    upload = retrieval_api.document_upload
    inner = {}

    def retry_while_running(**kwargs):
        inner["response"] = post(client, "slow")  # the client's retry, before we answer
        return upload(**kwargs)

    monkeypatch.setattr(retrieval_api, "document_upload", retry_while_running)
    assert post(client, "slow").status_code == 201
    assert inner["response"].status_code == 409 and inner["response"]["Retry-After"] == "1"
    monkeypatch.undo()

    # A first attempt that fails (a duplicate here) keeps nothing: the retry runs again.
    assert post(client, "dup").status_code == 400
    with schema_context("t_acme"):
        Document.objects.all().delete()
    assert post(client, "dup").status_code == 201


@DB
@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "caf\u00e9"])
def test_a_malformed_key_is_a_400_problem(world, post, key):
    client = api(host_of(world.acme), key_for(world.acme))
    response = post(client, key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]
    assert acme_uploads() == (0, 0)


# --- chat completions (live server: the stream runs in a thread of its own) -----------------

LIVE = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "How do refunds work?"}]}


def chat(live_server, raw_key: str, key: str, **body):
    return httpx2.post(
        f"{live_server.url}/api/v1/chat/completions", json={**CHAT, **body}, timeout=30,
        headers={"Authorization": f"Bearer {raw_key}", "Idempotency-Key": key},
    )  # fmt: skip


@LIVE
def test_a_retried_chat_completion_is_answered_once_and_billed_once(world, live_server, sim):
    _, raw = api_key_create(tenant=world.acme, name="SDK", scopes=["chat"])
    first = chat(live_server, raw, "c-1")
    retry = chat(live_server, raw, "c-1")
    assert first.status_code == retry.status_code == 200
    assert retry.headers["idempotent-replayed"] == "true" and retry.json() == first.json()
    assert len(sim.requests("/v1/chat/completions")) == 1
    usage_flush()
    assert UsageRecord.objects.filter(tenant=world.acme, feature="chat").count() == 1


@LIVE
def test_a_completed_stream_is_replayed_and_a_broken_one_runs_again(world, live_server, sim):
    _, raw = api_key_create(tenant=world.acme, name="SDK", scopes=["chat"])
    first = chat(live_server, raw, "s-1", stream=True)
    retry = chat(live_server, raw, "s-1", stream=True)
    assert first.text.endswith("data: [DONE]\n\n") and retry.text == first.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.headers["content-type"].startswith("text/event-stream")
    assert len(sim.requests("/v1/chat/completions")) == 1

    sim.script({"fault": "cut", "after_tokens": 2})
    broken = chat(live_server, raw, "s-2", stream=True)
    assert '"error"' in broken.text and "[DONE]" not in broken.text
    again = chat(live_server, raw, "s-2", stream=True)
    assert again.text.endswith("data: [DONE]\n\n") and "idempotent-replayed" not in again.headers
    assert len(sim.requests("/v1/chat/completions")) == 3


@LIVE
def test_model_tokens_per_minute_are_limited_per_key(world, live_server, sim, settings):
    settings.API_RATE_LIMITS = {
        tier: {**limits, "key_tokens_per_minute": 1200}
        for tier, limits in settings.API_RATE_LIMITS.items()
    }
    # Answers of ~140 tokens: two fit in the minute's 1,200 only because each call's 1,024
    # reserved tokens are given back but what they used; the third needs a full bucket again,
    # ~15 s of refill away (a slow machine stays well inside that).
    sim.configure(answer_tokens=140)
    _, raw = api_key_create(tenant=world.acme, name="SDK", scopes=["chat"])
    assert chat(live_server, raw, "t-1").status_code == 200  # 1024 reserved, then given back
    assert chat(live_server, raw, "t-2").status_code == 200
    refused = chat(live_server, raw, "t-3", max_tokens=1150)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"]  # the OpenAI error shape SDKs read
    embed = httpx2.post(
        f"{live_server.url}/api/v1/embeddings", timeout=30,
        json={"model": "local-minilm", "input": ["word " * 200] * 8},
        headers={"Authorization": f"Bearer {raw}"},
    )  # fmt: skip
    assert embed.status_code == 429
