"""The OpenAI-compatible API (chat completions with streaming, embeddings, models) driven by the
official `openai` SDK against a live server, as a customer's code would drive it: the SDK
must parse every answer and every error, and must raise (not return a truncated answer as
complete) when a stream breaks. The provider behind the gateway is the simulator.

Live-server tests are transactional (the server thread sees committed data only); usage rows
are then written by the ledger thread and read after `usage_flush()`. Bad-input checks use the
in-process test client (no provider is reached)."""

from __future__ import annotations

import json
import math
import time

import httpx2
import openai
import pytest
from django.test import Client
from django_tenants.utils import tenant_context

from ai.gateway.ledger_writer import usage_flush
from ai.openai_compat import streaming
from billing.models import UsageRecord
from retrieval.models import Document
from retrieval.services import document_upload
from tenants.models import APIKey
from tenants.services.api_keys import api_key_create, api_key_revoke
from tests.conftest import World, host_of
from tests.live import log_tail

# Live servers see committed data only.
LIVE = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])
QUESTION = "What does the annual plan refund policy say?"
POLICY = (
    b"# Refund policy\n\nAnnual plans can be refunded within 30 days of purchase. "
    b"Monthly plans are not refunded.\n"
)


def new_key(tenant, scopes=("chat",)) -> tuple[APIKey, str]:
    return api_key_create(tenant=tenant, name="SDK", scopes=list(scopes))


def sdk(live_server, raw_key: str, host: str | None = None) -> openai.OpenAI:
    """The official client on the live server's base domain (the key picks the tenant), or
    with `host` as the Host header (a tenant's host: *.localhost does not resolve here)."""
    port = live_server.url.rsplit(":", 1)[1]
    return openai.OpenAI(
        base_url=f"{live_server.url}/api/v1", api_key=raw_key, max_retries=0, timeout=30,
        default_headers={"Host": f"{host}:{port}"} if host else None,
    )  # fmt: skip


def usage_rows(tenant, request_id: str, *, wait_s: float = 5.0):
    """The ledger rows of one request, once written (a cancelled stream is metered by the
    server just after the client has seen its error event)."""
    deadline = time.monotonic() + wait_s
    while True:
        usage_flush(timeout=wait_s)
        rows = list(UsageRecord.objects.filter(tenant=tenant, request_id=request_id))
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def upload(tenant, title: str) -> Document:
    """A ready document (ingested in-process: Celery is eager, the test is autocommit)."""
    key, _ = new_key(tenant, scopes=("documents:write",))
    data = POLICY.replace(b"Refund policy", title.encode())
    document = document_upload(tenant=tenant, filename=f"{title}.md", data=data, api_key=key)
    with tenant_context(tenant):
        document.refresh_from_db()
    assert document.status == Document.Status.READY
    return document


def sse_lines(live_server, raw_key: str, body: dict) -> list[str]:
    """The raw `data:` lines of a streamed completion."""
    with httpx2.stream(
        "POST", f"{live_server.url}/api/v1/chat/completions", json={**body, "stream": True},
        headers={"Authorization": f"Bearer {raw_key}", "Accept": "text/event-stream"},
        timeout=30,
    ) as response:  # fmt: skip
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        return [line for line in response.iter_lines() if line.startswith("data:")]


# --- chat completions ------------------------------------------------------------------------


@LIVE
def test_it_answers_a_chat_completion_in_openais_shape_metered_once(world: World, live_server, sim):
    key, raw = new_key(world.acme)
    client = sdk(live_server, raw)
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": [{"type": "text", "text": "How do refunds work?"}]},
        ],
        temperature=0.2,
        user="end-user-42",
        top_p=0.9,  # ignored, as other fields Atrium does not use
    )
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content.startswith("Simulated answer: How do refunds work?")
    usage = completion.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens > 0
    sent = sim.requests("/v1/chat/completions")[-1]["body"]
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][0]["content"].startswith("Answer in one short sentence.")

    (row,) = usage_rows(world.acme, completion.id)  # one row, under the completion's id
    assert (row.api_key_id, row.feature, row.model, row.outcome) == (
        key.pk, "chat", "gpt-4o-mini", "ok"
    )  # fmt: skip
    assert (row.input_tokens, row.output_tokens) == (usage.prompt_tokens, usage.completion_tokens)

    capped = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Tell me a long story"}],
        max_completion_tokens=3,
    )  # fmt: skip
    assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 3


@LIVE
def test_it_streams_chunks_that_end_with_done_only_when_complete(world: World, live_server, sim):
    key, raw = new_key(world.acme)
    stream = sdk(live_server, raw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Stream me an answer"}],
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)  # ends normally
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Simulated answer: Stream me an answer") and len(text.split()) == 20
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert finals[0].model == "gpt-4o-mini"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == 20
    assert all(c.id == chunks[0].id for c in chunks)
    (row,) = usage_rows(world.acme, chunks[0].id)
    assert (row.outcome, row.output_tokens, row.api_key_id) == ("ok", 20, key.pk)

    lines = sse_lines(live_server, raw, {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "Another streamed answer"}
    ]})  # fmt: skip
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[-2].removeprefix("data: "))["choices"][0]["finish_reason"] == "stop"


@LIVE
def test_it_makes_the_sdk_raise_when_the_provider_cuts_the_stream(world: World, live_server, sim):
    _key, raw = new_key(world.acme)
    sim.script({"fault": "cut", "after_tokens": 3})
    stream = sdk(live_server, raw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Cut me off"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            received.append(chunk)
    assert raised.value.code == "stream_incomplete" and "broke off" in raised.value.message
    text = "".join(c.choices[0].delta.content or "" for c in received)
    assert text.split() == ["Simulated", "answer:", "Cut"]  # the 3 tokens sent, no more
    assert not any(c.choices[0].finish_reason for c in received)
    (row,) = usage_rows(world.acme, received[0].id)
    assert row.outcome == "incomplete"

    sim.script({"fault": "cut", "after_tokens": 3})
    lines = sse_lines(live_server, raw, {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": "Cut me off again"}
    ]})  # fmt: skip
    assert "[DONE]" not in lines[-1]
    assert json.loads(lines[-1].removeprefix("data: "))["error"]["type"] == "server_error"


@LIVE
def test_it_ends_an_open_stream_when_its_key_is_revoked(
    world: World, live_server, sim, monkeypatch
):
    monkeypatch.setattr(streaming, "KEY_RECHECK_S", 0.2)
    key, raw = new_key(world.acme)
    sim.script({"ok": True, "tokens_per_second": 20, "answer_tokens": 400})  # 20 s if left
    stream = sdk(live_server, raw).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Talk for a while"}],
        stream=True,
    )  # fmt: skip
    chunks = iter(stream)
    first = next(chunks)
    api_key_revoke(key=key)
    with pytest.raises(openai.APIError) as raised:
        for _ in chunks:
            pass
    assert raised.value.code == "invalid_api_key"
    (row,) = usage_rows(world.acme, first.id)
    assert row.outcome == "cancelled" and 0 < row.output_tokens < 400  # stopped, metered


@LIVE
def test_it_refuses_a_model_the_tenant_may_not_use_with_openais_404(world: World, live_server, sim):
    _key, raw = new_key(world.acme)
    client = sdk(live_server, raw)
    for model in ("gpt-4o", "no-such-model", "local-minilm"):  # standard tier, unknown, embedder
        with pytest.raises(openai.NotFoundError) as raised:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hello"}]
            )
        assert (raised.value.code, raised.value.param) == ("model_not_found", "model")
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Hello"}], stream=True
            )


@LIVE
def test_a_request_the_provider_rejects_is_the_callers_400_not_a_502_to_retry(
    world: World, live_server, sim
):
    """A provider's 400 (say, input over the model's context) is about the request: the SDK
    gets a 400, which it does not retry, where a 502 would have it send the request again.
    A provider's 404 (the catalog names a model it lacks) stays the platform's 502."""
    _key, raw = new_key(world.acme)
    client = sdk(live_server, raw).with_options(max_retries=2)  # as SDKs are by default
    hello = [{"role": "user", "content": "Hello"}]
    for stream in (False, True):
        sim.clear()
        sim.script({"fault": "status", "code": 400, "message": "context length exceeded"})
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model="gpt-4o-mini", messages=hello, stream=stream)
        assert raised.value.code == "provider_rejected_request"
        assert len(sim.requests("/v1/chat/completions")) == 1  # no retry, no failover
    sim.script({"fault": "status", "code": 404})
    with pytest.raises(openai.InternalServerError):
        client.with_options(max_retries=0).chat.completions.create(
            model="gpt-4o-mini", messages=hello
        )


@LIVE
def test_it_answers_from_the_keys_tenants_knowledge_base_with_citations(
    world: World, live_server, sim
):
    acme_doc = upload(world.acme, "Acme refund policy")
    upload(world.globex, "Globex refund policy")  # the same phrases in the other tenant
    _key, raw = new_key(world.acme)
    client = sdk(live_server, raw)
    atrium = {"atrium": {"knowledge_base": True, "k": 3}}
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}], extra_body=atrium
    )
    citations = completion.model_extra["atrium"]["citations"]
    assert citations and {c["document_id"] for c in citations} == {str(acme_doc.public_id)}
    assert citations[0]["index"] == 1 and citations[0]["title"] == "Acme refund policy"
    assert citations[0]["url"].endswith(f"/api/v1/documents/{acme_doc.public_id}")
    system = sim.requests("/v1/chat/completions")[-1]["body"]["messages"][0]["content"]
    assert "quoted data" in system and "not instructions" in system  # passages are data
    assert "Acme refund policy" in system and "Globex" not in system

    streamed = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}],
            extra_body=atrium, stream=True,
        )
    )  # fmt: skip
    final = next(c for c in streamed if c.choices and c.choices[0].finish_reason)
    assert final.model_extra["atrium"]["citations"] == citations

    nothing = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Quantum chromodynamics?"}],
        extra_body=atrium,
    )  # fmt: skip
    assert nothing.model_extra["atrium"]["citations"] == []
    assert "could not find" in nothing.choices[0].message.content


@LIVE
def test_it_refuses_other_tenants_keys_and_keys_without_the_scope_in_openais_shape(
    world: World, live_server, sim
):
    _key, globex_raw = new_key(world.globex)
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk(live_server, globex_raw, host=host_of(world.acme)).models.list()
    assert refused.value.code == "invalid_api_key" and refused.value.status_code == 401
    assert refused.value.response.headers["content-type"] == "application/problem+json"

    _key, search_only = new_key(world.acme, scopes=("search",))
    client = sdk(live_server, search_only)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )
    assert (denied.value.code, denied.value.type) == ("insufficient_scope", "permission_error")
    assert "“chat” scope" in denied.value.message
    body = denied.value.response.json()
    assert body["status"] == 403 and body["title"] == "Forbidden"  # still a problem+json
    assert client.models.list().data  # any valid key lists the models


# --- under daphne (ASGI, as in production) --------------------------------------------------


@pytest.fixture
def live_env(simulator) -> dict[str, str]:
    """The daphne process's providers: the simulator (the `sim` fixture's settings do not
    reach another process)."""
    return {
        "OPENAI_API_KEY": "sk-platform-openai-000000",
        "OPENAI_BASE_URL": simulator.openai_base_url,
        "ANTHROPIC_API_KEY": "sk-ant-platform-0000000",
        "ANTHROPIC_BASE_URL": simulator.anthropic_base_url,
    }


@LIVE
def test_it_streams_under_daphne_and_ends_broken_or_revoked_streams_with_an_error(
    world: World, sim, daphne_live_server
):
    key, raw = new_key(world.acme)
    client = openai.OpenAI(
        base_url=daphne_live_server.url("localhost", "/api/v1"), api_key=raw, max_retries=0,
        timeout=30,
    )  # fmt: skip

    def ask(text: str):
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}], stream=True
        )

    chunks = list(ask("Stream under daphne"))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.startswith("Simulated answer: Stream under daphne")
    assert chunks[-1].choices[0].finish_reason == "stop"

    sim.script({"fault": "cut", "after_tokens": 3})
    with pytest.raises(openai.APIError) as cut:
        list(ask("Cut under daphne"))
    assert cut.value.code == "stream_incomplete"

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True
        )

    sim.script({"ok": True, "tokens_per_second": 20, "answer_tokens": 400})  # 20 s if left
    stream = iter(ask("Talk for a while under daphne"))
    first = next(stream)
    api_key_revoke(key=key)
    with pytest.raises(openai.APIError) as revoked:
        list(stream)
    assert revoked.value.code == "invalid_api_key"
    _key, raw = new_key(world.acme)
    client = client.with_options(api_key=raw)
    sim.script({"ok": True, "tokens_per_second": 20, "answer_tokens": 400})
    left = ask("Talk while I hang up")
    abandoned = next(iter(left))
    left.close()  # the client goes away mid-answer

    # Metered once each, by the daphne process's own ledger thread.
    outcomes = [
        [row.outcome for row in usage_rows(world.acme, request_id, wait_s=10)]
        for request_id in (chunks[0].id, first.id, abandoned.id)
    ]
    assert outcomes == [["ok"], ["cancelled"], ["cancelled"]]
    log = daphne_live_server.log.read_text()
    assert "Traceback" not in log, log_tail(daphne_live_server.log)


# --- embeddings and models -------------------------------------------------------------------


@LIVE
def test_it_embeds_texts_as_floats_or_base64(world: World, live_server, sim):
    _key, raw = new_key(world.acme)
    client = sdk(live_server, raw)
    texts = ["Annual plans are refundable.", "Monthly plans are not."]
    packed = client.embeddings.create(model="local-minilm", input=texts)  # the SDK asks base64
    plain = client.embeddings.create(model="local-minilm", input=texts, encoding_format="float")
    assert packed.model == plain.model == "local-minilm" and packed.object == "list"
    assert [e.index for e in plain.data] == [0, 1]
    for a, b in zip(packed.data, plain.data, strict=True):
        assert len(a.embedding) == 384
        assert math.isclose(sum(x * x for x in b.embedding), 1, rel_tol=1e-5)
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding, strict=True)) < 1e-6
    assert plain.usage.prompt_tokens == plain.usage.total_tokens > 0
    rows = UsageRecord.objects.filter(tenant=world.acme, feature="embed", model="local-minilm")
    usage_flush(timeout=5)
    assert rows.count() == 2  # one per call

    single = client.embeddings.create(
        model="text-embedding-3-small", input="One text", dimensions=256
    )
    assert len(single.data) == 1 and len(single.data[0].embedding) == 256
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="local-minilm", input="One text", dimensions=100)
    assert refused.value.param == "dimensions"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.embeddings.create(model="local-minilm", input=["ok", "word " * 400])
    assert too_long.value.param == "input[1]" and "word pieces" in too_long.value.message


@LIVE
def test_it_lists_the_models_the_tenant_may_use(world: World, live_server, sim):
    _key, raw = new_key(world.acme, scopes=("documents:read",))  # any scope will do
    models = {m.id: m for m in sdk(live_server, raw).models.list()}
    # acme is on the free plan; the simulator is the platform's OpenAI and Anthropic.
    assert set(models) == {
        "local-extractive", "gpt-4o-mini", "claude-haiku", "local-minilm",
        "text-embedding-3-small",
    }  # fmt: skip
    assert models["claude-haiku"].owned_by == "anthropic" and models["gpt-4o-mini"].created > 0
    assert models["local-minilm"].model_extra["atrium"] == {
        "kind": "embedding", "context_window": 256, "dimensions": 384
    }  # fmt: skip


# --- bad input -------------------------------------------------------------------------------

MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.mark.django_db(databases=["default", "ledger"])
@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("chat/completions", b"{not json", 400, None),
        ("chat/completions", b"[1, 2]", 400, None),
        ("chat/completions", {"model": 5, "messages": "hi"}, 400, "messages"),
        ("chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES, "n": 2}, 400, "n"),
        ("chat/completions", {"model": "gpt-4o-mini", "messages": []}, 400, "messages"),
        ("chat/completions", {"messages": MESSAGES}, 400, "model"),
        (
            "chat/completions",
            {"model": "x", "messages": [{"role": "robot", "content": "Hi"}]},
            400, "messages[0].role",
        ),
        (
            "chat/completions",
            {"model": "x", "messages": [{"role": "tool", "content": "42"}]},
            400, "messages[0].role",
        ),
        (
            "chat/completions",
            {"model": "x", "messages": [{"role": "user", "content": None}]},
            400, "messages[0].content",
        ),
        (
            "chat/completions",
            {"model": "x", "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]},
            400, "messages[0].content",
        ),
        (
            "chat/completions",
            {"model": "x", "messages": [{"role": "system", "content": "Only rules"}]},
            400, "messages",
        ),
        (
            "chat/completions",
            {"model": "x", "messages": [{"role": "user", "content": "a\u0000b"}],
             "atrium": {"knowledge_base": True}},
            400, "messages[0].content",
        ),
        (
            "chat/completions",
            {"model": "x", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "\ud800"}
            ]}]},
            400, "messages[0].content",
        ),
        ("chat/completions", {"model": "x", "messages": MESSAGES, "temperature": 9}, 400,
         "temperature"),
        ("chat/completions", {"model": "x", "messages": MESSAGES, "tools": [{}]}, 400, "tools"),
        (
            "chat/completions",
            {"model": "x", "messages": MESSAGES, "atrium": {"k": 0}},
            400, "atrium.k",
        ),
        ("embeddings", {"model": "local-minilm", "input": ""}, 400, "input"),
        ("embeddings", {"model": "local-minilm", "input": [[1, 2, 3]]}, 400, "input"),
        ("embeddings", {"model": "local-minilm", "input": ["ok", "\ud800"]}, 400, "input"),
        ("embeddings", {"model": "local-minilm", "input": "x", "encoding_format": "hex"}, 400,
         "encoding_format"),
        ("embeddings", {"model": "no-such-model", "input": "x"}, 404, "model"),
    ],
)  # fmt: skip
def test_it_answers_bad_input_with_a_4xx_in_both_error_shapes(
    world: World, settings, path, body, status, param
):
    _key, raw = new_key(world.acme)
    client = Client(HTTP_HOST=settings.BASE_DOMAIN, HTTP_AUTHORIZATION=f"Bearer {raw}")
    data = body if isinstance(body, bytes) else json.dumps(body)
    response = client.post(f"/api/v1/{path}", data, content_type="application/json")
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["detail"]  # RFC 9457
    error = problem["error"]  # OpenAI
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


@pytest.mark.django_db(databases=["default", "ledger"])
def test_it_documents_the_openai_endpoints_and_their_error_shape(world: World, settings):
    spec = Client(HTTP_HOST=settings.BASE_DOMAIN).get("/api/schema/?format=json").json()
    chat = spec["paths"]["/api/v1/chat/completions"]["post"]
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["responses"]["404"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIProblem"
    }
    assert "error" in spec["components"]["schemas"]["OpenAIProblem"]["properties"]
    assert {"/api/v1/embeddings", "/api/v1/models"} <= set(spec["paths"])
