"""The answer runner (ai.conversations.runner) against real Redis and the provider simulator:
many answers at once on one loop, each answered once in the tenant its order names, taken over
from a runner that died (finished incomplete if it had started, generated if not), retried when
a run fails, failed after too many deliveries, bounded in time, and let finish on shutdown."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from asgiref.sync import async_to_sync
from django_tenants.utils import schema_context
from redis.exceptions import ResponseError

from ai.conversations import live, runner, services
from ai.conversations.generation import LOST_ANSWER, answer_end_lost
from ai.gateway.config import config_invalidate, fresh_snapshot
from ai.gateway.ledger_writer import usage_flush
from ai.models import Message
from billing.models import UsageRecord
from saas.lib.redis import async_client, sync_client
from tests.conftest import ensure_world, start_answer_runner

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])


def send(tenant, user, content: str = "What plans exist?") -> Message:
    conversation = services.conversation_start(tenant=tenant, user=user)
    exchange = services.conversation_send(
        tenant=tenant, conversation=conversation, content=content, user=user
    )
    return exchange.answer


def events_of(schema: str, answer: Message) -> list[dict]:
    key = live.stream_key(schema, str(answer.public_id))

    async def read() -> list[dict]:
        return [json.loads(e.json) for e in await live.entries_after(async_client(), key, 0)]

    return async_to_sync(read)()


def wait_until(condition, timeout_s: float = 30, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def stored(schema: str, answer: Message) -> Message:
    with schema_context(schema):
        return Message.objects.get(pk=answer.pk)


def ended(schema: str, answer: Message) -> bool:
    events = events_of(schema, answer)
    return bool(events) and events[-1]["type"] == "end"


def pending_entries() -> int:
    return sync_client().xpending(runner.QUEUE, runner.GROUP)["pending"]


def take_as_dead_runner() -> None:
    """A runner reads the queued orders and dies before acknowledging them."""
    client = sync_client()
    with contextlib.suppress(ResponseError):  # the group exists already
        client.xgroup_create(runner.QUEUE, runner.GROUP, id="0", mkstream=True)
    assert client.xreadgroup(runner.GROUP, "dead-runner", {runner.QUEUE: ">"}, count=100)


def test_one_runner_streams_several_answers_at_once(sim):
    sim.configure(tokens_per_second=20, answer_tokens=20)  # about a second each
    world = ensure_world()
    started = start_answer_runner()
    try:
        first = send(world.acme, world.alice, "First question")
        wait_until(lambda: len(events_of("t_acme", first)) >= 1, what="the first answer")
        second = send(world.acme, world.alice, "Second question")
        # The second streams while the first still does (one at a time, it would wait).
        wait_until(lambda: len(events_of("t_acme", second)) >= 1, what="the second answer")
        assert not ended("t_acme", first)
        wait_until(lambda: ended("t_acme", first) and ended("t_acme", second), what="the ends")
        third = send(world.acme, world.alice, "Third question")
        wait_until(lambda: ended("t_acme", third), what="the third answer")
    finally:
        started.stop()
    for answer in (first, second, third):
        answer = stored("t_acme", answer)
        events = events_of("t_acme", answer)
        assert answer.status == "complete" and answer.content
        assert answer.content == "".join(e["text"] for e in events if e["type"] == "delta")
    assert pending_entries() == 0  # each acknowledged
    # The provider connection outlives an answer (in production, no TLS handshake per answer).
    ports = [request["client_port"] for request in sim.requests("/v1/chat/completions")]
    assert len(ports) == 3 and ports[2] in ports[:2]


def test_a_runner_answers_in_the_tenant_its_order_names_only(sim):
    """The order names acme; globex's generating answer with the same id is not touched, and
    orders that are unreadable or name no tenant are dropped without stopping the runner."""
    world = ensure_world()
    answer = send(world.acme, world.alice)
    with schema_context("t_globex"):
        conversation = services.conversation_start(tenant=world.globex, user=world.charlie)
        twin = Message.objects.create(
            pk=answer.pk, conversation=conversation, role="assistant", status="generating"
        )
    sync_client().xadd(runner.QUEUE, {"order": "not json"})
    with schema_context("t_acme"):
        order = services.AnswerOrder.of(
            services.Exchange(answer, answer, []), answer.conversation, None
        )
    sync_client().xadd(runner.QUEUE, {"order": json.dumps({**order.fields(), "tenant": "t_gone"})})
    started = start_answer_runner()
    try:
        wait_until(lambda: ended("t_acme", answer) and pending_entries() == 0, what="the answer")
    finally:
        started.stop()
    assert stored("t_acme", answer).status == "complete"
    assert stored("t_globex", twin).status == "generating"
    assert events_of("t_globex", twin) == []
    assert len(sim.requests("/v1/chat/completions")) == 1


def test_answers_of_a_runner_that_died_are_finished_by_another_once(sim):
    """One answer had not started: it is generated. One had streamed a word: it ends
    incomplete with exactly that word, and the provider is not called for it again."""
    world = ensure_world()
    unstarted = send(world.acme, world.alice, "Not started")
    started_one = send(world.acme, world.alice, "Started")
    take_as_dead_runner()
    key = live.stream_key("t_acme", str(started_one.public_id))

    async def streamed_a_word() -> None:
        await live.append(async_client(), key, 1, {"type": "delta", "text": "Partial"})

    async_to_sync(streamed_a_word)()
    replacement = start_answer_runner(lease_s=1)
    try:
        wait_until(
            lambda: ended("t_acme", unstarted) and ended("t_acme", started_one),
            what="the taken-over answers",
        )
        wait_until(lambda: pending_entries() == 0, what="the acknowledgements")
    finally:
        replacement.stop()
    assert stored("t_acme", unstarted).status == "complete"
    finished = stored("t_acme", started_one)
    assert (finished.status, finished.content) == ("incomplete", "Partial")
    assert [e["type"] for e in events_of("t_acme", started_one)] == ["delta", "end"]
    assert len(sim.requests("/v1/chat/completions")) == 1  # the unstarted one only


def test_a_run_that_fails_is_taken_again(sim, monkeypatch):
    world = ensure_world()
    calls = []
    real = runner.answer_generate

    async def fails_once(**kwargs):
        calls.append(kwargs["order"].message_id)
        if len(calls) == 1:
            raise RuntimeError("the database went away")
        await real(**kwargs)

    monkeypatch.setattr(runner, "answer_generate", fails_once)
    answer = send(world.acme, world.alice)
    started = start_answer_runner(lease_s=1)
    try:
        wait_until(lambda: ended("t_acme", answer), what="the retried answer")
    finally:
        started.stop()
    assert calls == [answer.pk, answer.pk]
    assert stored("t_acme", answer).status == "complete"


def test_an_answer_delivered_too_often_ends_failed(sim):
    world = ensure_world()
    answer = send(world.acme, world.alice)
    take_as_dead_runner()
    entry = sync_client().xpending_range(runner.QUEUE, runner.GROUP, "-", "+", 1)[0]
    # Another runner took it and died too: two deliveries so far.
    sync_client().xclaim(runner.QUEUE, runner.GROUP, "dead-again", 0, [entry["message_id"]])
    started = start_answer_runner(lease_s=1, max_deliveries=2)
    try:
        wait_until(lambda: ended("t_acme", answer), what="the failed answer")
        wait_until(lambda: pending_entries() == 0, what="the acknowledgement")
    finally:
        started.stop()
    failed = stored("t_acme", answer)
    assert (failed.status, failed.error) == ("failed", LOST_ANSWER)
    assert sim.requests("/v1/chat/completions") == []


def test_an_order_older_than_a_fresh_one_reads_its_answer_before_running(sim):
    """No runner ran for a while and the beat ended the answer as lost: its order, delivered
    for the first time long after its send, is not generated (a fresh one is run unread)."""
    world = ensure_world()
    answer = send(world.acme, world.alice)
    client = sync_client()
    ((_, ((_, fields),)),) = client.xread({runner.QUEUE: "0"})
    client.delete(runner.QUEUE)
    sent_ms = int((time.time() - 2 * runner.FRESH_S) * 1000)
    client.xadd(runner.QUEUE, fields, id=f"{sent_ms}-0")
    async_to_sync(answer_end_lost)(tenant=world.acme, message_id=answer.pk)
    started = start_answer_runner()
    try:
        wait_until(lambda: client.xlen(runner.QUEUE) == 0, what="the order done")  # acked first
    finally:
        started.stop()
    assert stored("t_acme", answer).status == "failed"
    assert [e["type"] for e in events_of("t_acme", answer)] == ["end"]
    assert sim.requests("/v1/chat/completions") == []


def test_an_answer_deleted_before_its_run_is_metered_once_and_the_order_done(sim):
    """The conversation is deleted between the send and the run: the answer has no row to
    store in any more, which ends the order quietly rather than failing it for a retry."""
    world = ensure_world()
    answer = send(world.acme, world.alice)
    services.conversation_delete(tenant=world.acme, conversation=answer.conversation)
    started = start_answer_runner(lease_s=30)
    try:
        wait_until(lambda: sync_client().xlen(runner.QUEUE) == 0, what="the order done")
    finally:
        started.stop()
    with schema_context("t_acme"):
        assert not Message.objects.filter(pk=answer.pk).exists()
    usage_flush()
    assert UsageRecord.objects.filter(request_id=answer.request_id).count() == 1


def test_an_answer_out_of_time_ends_incomplete_with_what_was_shown(sim):
    sim.configure(tokens_per_second=20, answer_tokens=400)  # 20 s: far past the limit below
    world = ensure_world()
    answer = send(world.acme, world.alice, "Tell me everything")
    started = start_answer_runner(time_limit_s=1.5)
    try:
        wait_until(lambda: ended("t_acme", answer), what="the end")
    finally:
        started.stop()
    events = events_of("t_acme", answer)
    shown = "".join(e["text"] for e in events if e["type"] == "delta")
    answer = stored("t_acme", answer)
    assert answer.status == "incomplete" and shown and answer.content == shown
    assert events[-1]["status"] == "incomplete"
    assert pending_entries() == 0


def test_a_stopping_runner_lets_its_running_answers_finish(sim):
    sim.configure(tokens_per_second=20, answer_tokens=20)
    world = ensure_world()
    answer = send(world.acme, world.alice)
    started = start_answer_runner()
    wait_until(lambda: len(events_of("t_acme", answer)) >= 1, what="the first delta")
    started.stop()  # SIGTERM in `run_answers`
    assert stored("t_acme", answer).status == "complete"
    assert pending_entries() == 0


def test_a_runner_keeps_the_gateways_state_current_while_it_waits(sim):
    """No answer has to check the catalog's version on its way to the provider: the runner
    does it in the background, idle or not."""
    config_invalidate()  # this process's snapshot is gone
    started = start_answer_runner()
    try:
        wait_until(lambda: fresh_snapshot() is not None, what="the runner's refresh")
    finally:
        started.stop()


def test_a_runner_goes_on_when_redis_lost_the_queue(sim):
    """Redis restarted without its data (or was flushed): the group is made again and the
    answers queued since are taken, instead of the runner failing every read for good."""
    world = ensure_world()
    started = start_answer_runner()
    try:
        wait_until(lambda: sync_client().exists(runner.QUEUE), what="the queue")
        sync_client().flushdb()
        answer = send(world.acme, world.alice)
        wait_until(lambda: ended("t_acme", answer), what="the answer")
    finally:
        started.stop()
    assert stored("t_acme", answer).status == "complete"
