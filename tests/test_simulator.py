"""The provider simulator (ai/simulator), driven through the official OpenAI and Anthropic SDKs.

This module runs its own simulator rather than the session one from conftest, because it changes
defaults with `configure()`; every test starts from `reset()`. No database is needed.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from ai.simulator import Simulator

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SYSTEM = "Be brief."
# 2 system words + 6 question words; the default answer is 20 word-ish tokens.
PROMPT_TOKENS = 8
ANSWER_TOKENS = 20


@pytest.fixture(scope="module")
def _server() -> Iterator[Simulator]:
    with Simulator(port=0) as simulator:
        yield simulator


@pytest.fixture
def provider_sim(_server: Simulator) -> Iterator[Simulator]:
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def oai(provider_sim: Simulator) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(
        base_url=provider_sim.openai_base_url, api_key="sk-test-openai", max_retries=0, timeout=5
    )
    yield client
    client.close()


@pytest.fixture
def ant(provider_sim: Simulator) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(
        base_url=provider_sim.anthropic_base_url, api_key="sk-ant-test", max_retries=0, timeout=5
    )
    yield client
    client.close()


def chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=kwargs.pop("model", "gpt-sim"),
        messages=kwargs.pop("messages", [{"role": "system", "content": SYSTEM}, *QUESTION]),
        **kwargs,
    )


def message(client: anthropic.Anthropic, **kwargs: Any) -> Any:
    return client.messages.create(
        model=kwargs.pop("model", "claude-sim"),
        max_tokens=kwargs.pop("max_tokens", 256),
        system=SYSTEM,
        messages=QUESTION,
        **kwargs,
    )


def drain(stream: Any) -> tuple[list[Any], BaseException | None]:
    """Items an SDK stream yielded before it ended or raised, and what it raised."""
    items: list[Any] = []
    try:
        for item in stream:
            items.append(item)
    except Exception as error:
        return items, error
    return items, None


def control(sim: Simulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(sim.base_url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# -- normal answers --------------------------------------------------------------------------


def test_it_answers_openai_chat_with_usage(oai):
    completion = chat(oai)

    assert completion.model == "gpt-sim"
    assert completion.choices[0].message.content.startswith(
        "Simulated answer: What is the capital of France? lorem ipsum"
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == ANSWER_TOKENS
    assert completion.usage.total_tokens == PROMPT_TOKENS + ANSWER_TOKENS


def test_it_streams_openai_chat_with_a_final_usage_chunk(oai):
    expected = chat(oai)

    chunks = list(chat(oai, stream=True, stream_options={"include_usage": True}))

    *answer_chunks, usage_chunk = chunks
    assert chunks[0].choices[0].delta.role == "assistant"
    tokens = [c.choices[0].delta.content for c in answer_chunks if c.choices[0].delta.content]
    assert len(tokens) == ANSWER_TOKENS
    assert "".join(tokens) == expected.choices[0].message.content
    assert answer_chunks[-1].choices[0].finish_reason == "stop"
    assert usage_chunk.choices == []
    assert usage_chunk.usage.prompt_tokens == expected.usage.prompt_tokens
    assert usage_chunk.usage.completion_tokens == expected.usage.completion_tokens


def test_it_sends_no_usage_chunk_unless_asked(oai):
    chunks = list(chat(oai, stream=True))

    assert all(chunk.choices and chunk.usage is None for chunk in chunks)


def test_it_answers_anthropic_messages_with_usage(ant):
    reply = message(ant)

    assert reply.model == "claude-sim"
    assert reply.content[0].text.startswith("Simulated answer: What is the capital of France?")
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens == PROMPT_TOKENS
    assert reply.usage.output_tokens == ANSWER_TOKENS


def test_it_streams_anthropic_events_in_the_real_order(ant):
    expected = message(ant)

    events = list(message(ant, stream=True))

    kinds = [event.type for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * ANSWER_TOKENS,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0].message.usage.input_tokens == PROMPT_TOKENS
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == (
        expected.content[0].text
    )
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-2].usage.output_tokens == expected.usage.output_tokens


def test_it_gives_the_anthropic_stream_helper_a_complete_final_message(ant):
    with ant.messages.stream(model="claude-sim", max_tokens=256, messages=QUESTION) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert final.content[0].text == text
    assert final.usage.input_tokens == 6
    assert final.usage.output_tokens == ANSWER_TOKENS


def test_it_works_with_the_async_clients(provider_sim):
    async def run() -> tuple[str, str]:
        async with (
            openai.AsyncOpenAI(
                base_url=provider_sim.openai_base_url, api_key="k", max_retries=0
            ) as aoai,
            anthropic.AsyncAnthropic(
                base_url=provider_sim.anthropic_base_url, api_key="k", max_retries=0
            ) as aant,
        ):
            stream = await aoai.chat.completions.create(
                model="gpt-sim", messages=QUESTION, stream=True
            )
            openai_text = "".join([c.choices[0].delta.content or "" async for c in stream])
            reply = await aant.messages.create(model="claude-sim", max_tokens=64, messages=QUESTION)
            return openai_text, reply.content[0].text

    openai_text, anthropic_text = asyncio.run(run())

    assert openai_text == anthropic_text
    assert openai_text.startswith("Simulated answer: What is the capital")


def test_it_stops_at_the_requests_max_tokens(oai, ant):
    completion = chat(oai, max_completion_tokens=5)
    reply = message(ant, max_tokens=5)

    assert completion.usage.completion_tokens == 5
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Simulated answer: What is the"
    assert reply.usage.output_tokens == 5
    assert reply.stop_reason == "max_tokens"


def test_it_uses_the_configured_answer_and_step_overrides(provider_sim, oai):
    provider_sim.script({"ok": True, "answer_tokens": 3})
    short = chat(oai, messages=[{"role": "user", "content": "Hello there"}])
    provider_sim.configure(answer="Paris is the capital.")
    provider_sim.script({"ok": True, "answer": "Scripted."})

    scripted = chat(oai)
    configured = chat(oai)

    assert short.choices[0].message.content == "Simulated answer: Hello"
    assert scripted.choices[0].message.content == "Scripted."
    assert scripted.usage.completion_tokens == 1
    assert configured.choices[0].message.content == "Paris is the capital."
    assert configured.usage.completion_tokens == 4


def test_it_embeds_inputs_as_deterministic_unit_vectors(oai):
    small = oai.embeddings.create(
        model="text-embedding-sim", input=["alpha beta", "gamma", "alpha beta"], dimensions=8
    )
    default = oai.embeddings.create(model="text-embedding-sim", input="alpha beta")
    as_floats = oai.embeddings.create(
        model="text-embedding-sim", input="alpha beta", encoding_format="float"
    )

    first, second, third = (item.embedding for item in small.data)
    assert len(first) == 8
    assert first == third
    assert first != second
    assert math.isclose(sum(value * value for value in first), 1.0, rel_tol=1e-5)
    assert small.usage.prompt_tokens == 5
    assert len(default.data[0].embedding) == 384
    # The SDK asks for base64 float32 by default; both encodings give the same vector.
    assert default.data[0].embedding == pytest.approx(as_floats.data[0].embedding, rel=1e-6)
    with pytest.raises(openai.BadRequestError):
        oai.embeddings.create(model="text-embedding-sim", input=[])


def test_it_lists_models_for_both_sdks(oai, ant):
    openai_ids = [model.id for model in oai.models.list()]
    anthropic_ids = [model.id for model in ant.models.list()]

    assert "gpt-4o-mini" in openai_ids
    assert anthropic_ids == openai_ids


def test_it_keeps_connections_alive_across_json_and_streamed_answers(provider_sim):
    connection = http.client.HTTPConnection(provider_sim.host, provider_sim.port, timeout=5)
    body = json.dumps({"model": "m", "messages": QUESTION, "stream": True})
    try:
        connection.request("POST", "/v1/chat/completions", body=body)
        streamed = connection.getresponse().read()
        connection.request("GET", "/v1/models")
        listed = connection.getresponse()
        listed.read()
    finally:
        connection.close()

    assert streamed.endswith(b"data: [DONE]\n\n")
    assert listed.status == 200
    assert len(provider_sim.requests()) == 2


def test_it_delays_by_the_scripted_latency_and_pacing(provider_sim, oai):
    # Only a lower bound: the waits are sleeps, so they cannot be shorter than asked.
    provider_sim.script({"ok": True, "latency_ms": 60, "ttft_ms": 40, "tokens_per_second": 100})

    started = time.monotonic()
    list(chat(oai, stream=True))

    assert time.monotonic() - started >= 0.06 + 0.04 + (ANSWER_TOKENS - 1) / 100


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "openai_error", "anthropic_error"),
    [
        (400, openai.BadRequestError, anthropic.BadRequestError),
        (401, openai.AuthenticationError, anthropic.AuthenticationError),
        (403, openai.PermissionDeniedError, anthropic.PermissionDeniedError),
        (429, openai.RateLimitError, anthropic.RateLimitError),
        (500, openai.InternalServerError, anthropic.InternalServerError),
        (503, openai.InternalServerError, anthropic.ServiceUnavailableError),
        (529, openai.InternalServerError, anthropic.OverloadedError),
    ],
)
def test_it_raises_the_sdk_error_class_for_each_status(
    provider_sim, oai, ant, code, openai_error, anthropic_error
):
    provider_sim.script({"fault": "status", "code": code}, {"fault": "status", "code": code})

    with pytest.raises(openai_error) as openai_raised:
        chat(oai)
    with pytest.raises(anthropic_error) as anthropic_raised:
        message(ant, stream=True)

    assert openai_raised.value.status_code == code
    assert anthropic_raised.value.status_code == code
    assert isinstance(openai_raised.value.body, dict)
    assert openai_raised.value.body["message"]
    assert anthropic_raised.value.type == (
        {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}.get(
            code
        )
        or {429: "rate_limit_error", 529: "overloaded_error"}.get(code, "api_error")
    )


def test_it_sends_retry_after_with_rate_limits(provider_sim, oai, ant):
    provider_sim.script(
        {"fault": "status", "code": 429, "retry_after": 7},
        {"fault": "status", "code": 429, "retry_after": 2, "retry_after_ms": 1500},
    )

    with pytest.raises(openai.RateLimitError) as openai_raised:
        chat(oai)
    with pytest.raises(anthropic.RateLimitError) as anthropic_raised:
        message(ant)

    assert openai_raised.value.response.headers["retry-after"] == "7"
    assert openai_raised.value.body["code"] == "rate_limit_exceeded"
    assert anthropic_raised.value.response.headers["retry-after"] == "2"
    assert anthropic_raised.value.response.headers["retry-after-ms"] == "1500"
    assert anthropic_raised.value.response.headers["request-id"].startswith("req_")


def test_it_hangs_until_the_client_times_out(provider_sim, oai, ant):
    provider_sim.script({"fault": "hang", "seconds": 5}, {"fault": "hang", "seconds": 5})

    with pytest.raises(openai.APITimeoutError):
        chat(oai, timeout=0.2)
    with pytest.raises(anthropic.APITimeoutError):
        message(ant, stream=True, timeout=0.2)
    # The hung requests do not block the next one.
    assert chat(oai).usage.completion_tokens == ANSWER_TOKENS


def test_it_cuts_streams_after_the_scripted_tokens(provider_sim, oai, ant):
    provider_sim.script({"fault": "cut", "after_tokens": 3}, {"fault": "cut", "after_tokens": 3})

    openai_chunks, openai_error = drain(
        chat(oai, stream=True, stream_options={"include_usage": True})
    )
    anthropic_events, anthropic_error = drain(message(ant, stream=True))

    assert isinstance(openai_error, openai.APIConnectionError)
    assert [c.choices[0].delta.content for c in openai_chunks[1:]] == [
        "Simulated",
        " answer:",
        " What",
    ]
    # The anthropic SDK lets the transport error through unwrapped.
    assert isinstance(anthropic_error, httpx2.RemoteProtocolError)
    assert [e.type for e in anthropic_events].count("content_block_delta") == 3
    assert "message_stop" not in [e.type for e in anthropic_events]


def test_it_sends_in_band_stream_errors(provider_sim, oai, ant):
    provider_sim.script(
        {"fault": "sse_error", "after_tokens": 2}, {"fault": "sse_error", "after_tokens": 2}
    )

    openai_chunks, openai_error = drain(chat(oai, stream=True))
    anthropic_events, anthropic_error = drain(message(ant, stream=True))

    assert type(openai_error) is openai.APIError
    assert openai_error.body["type"] == "server_error"
    assert len(openai_chunks) == 3
    assert isinstance(anthropic_error, anthropic.APIStatusError)
    assert anthropic_error.status_code == 200
    assert anthropic_error.type == "overloaded_error"
    assert [e.type for e in anthropic_events].count("content_block_delta") == 2


def test_it_sends_malformed_stream_data(provider_sim, oai, ant):
    provider_sim.script(
        {"fault": "malformed", "after_tokens": 1}, {"fault": "malformed", "after_tokens": 1}
    )

    openai_chunks, openai_error = drain(chat(oai, stream=True))
    anthropic_events, anthropic_error = drain(message(ant, stream=True))

    assert isinstance(openai_error, json.JSONDecodeError)
    assert len(openai_chunks) == 2
    assert isinstance(anthropic_error, json.JSONDecodeError)
    assert [e.type for e in anthropic_events].count("content_block_delta") == 1


def test_it_streams_without_usage_when_scripted(provider_sim, oai, ant):
    provider_sim.script({"fault": "no_usage"}, {"fault": "no_usage"}, {"fault": "no_usage"})

    chunks = list(chat(oai, stream=True, stream_options={"include_usage": True}))
    events = list(message(ant, stream=True))
    reply = chat(oai)

    assert all(chunk.usage is None and chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert events[0].message.usage.input_tokens == 0
    assert events[-2].usage.output_tokens == 0
    assert reply.usage is None


def test_it_turns_stream_faults_into_json_failures_for_json_requests(provider_sim, oai, ant):
    provider_sim.script(
        {"fault": "cut"}, {"fault": "malformed"}, {"fault": "sse_error"}, {"fault": "sse_error"}
    )

    with pytest.raises(openai.APIConnectionError):
        chat(oai)
    with pytest.raises(json.JSONDecodeError):
        chat(oai)
    with pytest.raises(openai.InternalServerError):
        chat(oai)
    with pytest.raises(anthropic.OverloadedError):
        message(ant)


# -- script, log and control -----------------------------------------------------------------


def test_it_matches_steps_by_model_and_path(provider_sim, oai, ant):
    provider_sim.script(
        {"fault": "status", "code": 500, "model": "gpt-b"},
        {"fault": "status", "code": 529, "path": "/v1/messages"},
    )

    assert chat(oai, model="gpt-a").usage is not None
    with pytest.raises(anthropic.OverloadedError):
        message(ant)
    with pytest.raises(openai.InternalServerError):
        chat(oai, model="gpt-b")
    assert provider_sim.pending() == []


def test_it_logs_received_requests(provider_sim, oai, ant):
    provider_sim.script({"fault": "status", "code": 429})
    with pytest.raises(openai.RateLimitError):
        chat(oai)
    list(chat(oai, stream=True, model="gpt-other"))
    message(ant)

    chats = provider_sim.requests("/v1/chat/completions")
    messages = provider_sim.requests("/v1/messages")

    assert len(provider_sim.requests()) == 3
    assert [(r["model"], r["stream"], r["fault"]) for r in chats] == [
        ("gpt-sim", False, "status"),
        ("gpt-other", True, None),
    ]
    assert chats[0]["headers"]["authorization"] == "Bearer sk-test-openai"
    # anthropic 2.x sends the API key as a bearer token, not x-api-key.
    assert messages[0]["headers"]["authorization"] == "Bearer sk-ant-test"
    assert messages[0]["headers"]["anthropic-version"]
    assert messages[0]["body"]["system"] == SYSTEM
    assert chats[0]["time"] <= chats[1]["time"]
    provider_sim.clear()
    assert provider_sim.requests() == []


def test_it_shares_one_script_between_concurrent_clients(provider_sim, oai):
    provider_sim.script(*[{"fault": "status", "code": 429}] * 5)
    outcomes: list[str] = []
    lock = threading.Lock()

    def call() -> None:
        for _ in range(3):
            try:
                list(chat(oai, stream=True))
                outcome = "ok"
            except openai.RateLimitError:
                outcome = "429"
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes).count("429") == 5
    assert len(outcomes) == 30
    assert len(provider_sim.requests()) == 30


def test_it_rejects_invalid_steps(provider_sim):
    for step in (
        {"fault": "explode"},
        {"fault": "status"},
        {"fault": "cut", "after_token": 2},
        {"latency_ms": 5},
    ):
        with pytest.raises(ValueError):
            provider_sim.script(step)
    assert provider_sim.pending() == []


def test_it_exposes_the_script_log_and_config_over_http(provider_sim, oai):
    assert control(provider_sim, "GET", "/_sim/health") == (200, {"ok": True})
    steps = [{"fault": "status", "code": 503}, {"ok": True, "answer": "Over HTTP."}]
    assert control(provider_sim, "POST", "/_sim/script", {"steps": steps}) == (200, {"pending": 2})
    assert control(provider_sim, "GET", "/_sim/script") == (200, {"steps": steps})
    status, config = control(provider_sim, "POST", "/_sim/config", {"answer_tokens": 4})
    assert status == 200
    assert config["config"]["answer_tokens"] == 4

    with pytest.raises(openai.InternalServerError):
        chat(oai)
    assert chat(oai).choices[0].message.content == "Over HTTP."
    assert chat(oai).usage.completion_tokens == 4

    status, log = control(provider_sim, "GET", "/_sim/requests?path=/v1/chat/completions")
    assert status == 200
    assert [entry["fault"] for entry in log["requests"]] == ["status", None, None]
    assert control(provider_sim, "DELETE", "/_sim/requests") == (200, {"cleared": 3})
    control(provider_sim, "POST", "/_sim/script", {"steps": steps})
    assert control(provider_sim, "DELETE", "/_sim/script") == (200, {"cleared": 2})
    assert control(provider_sim, "POST", "/_sim/script", {"steps": [{"fault": "nope"}]})[0] == 400
    assert control(provider_sim, "GET", "/_sim/nothing")[0] == 404


# -- batch APIs ------------------------------------------------------------------------------


def batch_file(client: openai.OpenAI, *custom_ids: str) -> str:
    lines = [
        json.dumps(
            {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
             "body": {"model": "gpt-sim", "messages": [{"role": "user", "content": f"Hi {cid}"}]}}
        )
        for cid in custom_ids
    ]  # fmt: skip
    upload = client.files.create(file=("in.jsonl", "\n".join(lines).encode()), purpose="batch")
    assert upload.purpose == "batch" and upload.bytes > 0
    return upload.id


def jsonl(text: str) -> dict[str, Any]:
    return {line["custom_id"]: line for line in map(json.loads, text.splitlines())}


def test_it_runs_openai_batches_with_output_and_error_files(provider_sim, oai):
    provider_sim.configure(batch_polls=1)
    provider_sim.script({"fault": "status", "code": 400, "custom_id": "b"})
    batch = oai.batches.create(
        input_file_id=batch_file(oai, "a", "b"), endpoint="/v1/chat/completions",
        completion_window="24h",
    )  # fmt: skip
    assert batch.status == "validating"
    assert oai.batches.retrieve(batch.id).status == "in_progress"  # the one poll configured
    done = oai.batches.retrieve(batch.id)
    assert done.status == "completed" and done.request_counts.failed == 1
    output = jsonl(oai.files.content(done.output_file_id).text)
    assert output["a"]["response"]["status_code"] == 200
    answer = output["a"]["response"]["body"]["choices"][0]["message"]["content"]
    assert answer.startswith("Simulated answer: Hi a")
    errors = jsonl(oai.files.content(done.error_file_id).text)
    assert errors["b"]["response"]["status_code"] == 400
    assert provider_sim.requests("/v1/chat/completions") == []  # no separate chat calls
    assert provider_sim.batches()[0]["custom_ids"] == ["a", "b"]


def test_it_cancels_and_expires_openai_batches(provider_sim, oai):
    file_id = batch_file(oai, "a")
    provider_sim.configure(batch_polls=3)
    batch = oai.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert oai.batches.cancel(batch.id).status == "cancelling"
    cancelled = oai.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.output_file_id is None
    assert jsonl(oai.files.content(cancelled.error_file_id).text)["a"]["error"]["code"] == (
        "batch_cancelled"
    )
    provider_sim.configure(batch_polls=0)
    provider_sim.script({"fault": "batch_expired", "path": "/v1/batches"})
    expired = oai.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    expired = oai.batches.retrieve(expired.id)
    assert expired.status == "expired"
    assert jsonl(oai.files.content(expired.error_file_id).text)["a"]["error"]["code"] == (
        "batch_expired"
    )
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_missing")


def test_it_runs_anthropic_message_batches(provider_sim, ant):
    provider_sim.configure(batch_polls=1)
    provider_sim.script({"fault": "status", "code": 400, "custom_id": "b"})
    params = {"model": "claude-sim", "max_tokens": 50, "messages": QUESTION}
    batch = ant.messages.batches.create(
        requests=[{"custom_id": cid, "params": params} for cid in ("a", "b")]
    )
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert ant.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    ended = ant.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.errored == 1
    results = {r.custom_id: r.result for r in ant.messages.batches.results(batch.id)}
    assert results["a"].type == "succeeded"
    assert results["a"].message.usage.output_tokens == ANSWER_TOKENS
    assert results["b"].type == "errored"
    assert results["b"].error.error.type == "invalid_request_error"
    assert provider_sim.requests("/v1/messages") == []

    other = ant.messages.batches.create(requests=[{"custom_id": "c", "params": params}])
    assert ant.messages.batches.cancel(other.id).processing_status == "canceling"
    assert ant.messages.batches.retrieve(other.id).processing_status == "ended"
    assert [r.result.type for r in ant.messages.batches.results(other.id)] == ["canceled"]
