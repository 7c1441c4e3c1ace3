"""A chat answer survives its runner being SIGKILLed mid-stream: the queue still holds the order
(pending in the consumer group, never acknowledged), another runner takes it once the lease
has run out and ends the answer incomplete with exactly what the page was shown, once; a
further duplicate run changes nothing; the answer is never generated twice nor metered twice.

The killed runner is a `manage.py run_answers` process, as deployed; the one that takes over
runs in this process. The queue holds only this test's order: each test starts on an empty
Redis database (conftest clears the cache, which flushes it)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django_tenants.utils import schema_context

from ai.conversations import live, services
from ai.conversations.generation import answer_generate
from ai.conversations.runner import GROUP, QUEUE
from ai.gateway.ledger_writer import usage_flush
from ai.models import Message
from billing.models import UsageRecord
from saas.lib.redis import async_client, sync_client
from tests.conftest import ensure_world, start_answer_runner
from tests.live import answer_runner_process, log_tail

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])
# How long the runner taking over waits for the killed one's lease to run out (seconds).
LEASE_S = 1
DEADLINE_S = 60


def streamed(key: str) -> list[dict]:
    async def read() -> list[dict]:
        return [json.loads(e.json) for e in await live.entries_after(async_client(), key, 0)]

    return async_to_sync(read)()


def pending_orders() -> list[tuple[str, dict]]:
    """(runner, order) of each queue entry a runner took and did not acknowledge."""
    client = sync_client()
    taken = []
    for pending in client.xpending_range(QUEUE, GROUP, "-", "+", 100):
        ((_, fields),) = client.xrange(QUEUE, pending["message_id"], pending["message_id"])
        taken.append((pending["consumer"].decode(), json.loads(fields[b"order"])))
    return taken


def wait_for(done: Callable[[], bool], what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, f"{what}\n{log_tail(log) if log else ''}"
        time.sleep(0.05)


def test_a_runner_killed_mid_answer_leaves_it_incomplete_once_never_twice(sim, tmp_path):
    sim.configure(tokens_per_second=20, answer_tokens=400)  # 20 s: killed long before the end
    world = ensure_world()
    conversation = services.conversation_start(tenant=world.acme, user=world.alice)
    env = {"OPENAI_API_KEY": "sk-kill-test", "OPENAI_BASE_URL": sim.openai_base_url}
    log = tmp_path / "runner.log"
    with answer_runner_process(log=log, env=env) as runner:
        runner.wait_ready()
        exchange = services.conversation_send(
            tenant=world.acme, conversation=conversation, content="Tell me everything",
            user=world.alice,
        )  # fmt: skip
        key = live.stream_key("t_acme", str(exchange.answer.public_id))
        wait_for(lambda: len(streamed(key)) >= 5, "the answer did not stream", log)
        os.kill(runner.process.pid, signal.SIGKILL)
        runner.process.wait(10)
        shown = "".join(e["text"] for e in streamed(key) if e["type"] == "delta")
        order = services.AnswerOrder.of(exchange, conversation, world.alice.pk)
        # The queue still holds the order, taken by the dead runner, for another one.
        assert pending_orders() == [(runner.name, {"tenant": "t_acme", **order.fields()})]

    successor = start_answer_runner(lease_s=LEASE_S)
    try:
        wait_for(lambda: streamed(key)[-1]["type"] == "end", "no runner ended the answer")
    finally:
        successor.stop()  # after the answers it runs, acknowledged
    assert pending_orders() == [] and sync_client().xlen(QUEUE) == 0  # done with, for good

    events = streamed(key)
    # A duplicate run of the order (a delivery after the answer ended) changes nothing.
    async_to_sync(answer_generate)(tenant=world.acme, order=order)
    assert streamed(key) == events
    assert [e["type"] for e in events].count("end") == 1
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["status"] == "incomplete" and events[-1]["content"] == shown
    with schema_context("t_acme"):
        answer = Message.objects.get(pk=exchange.answer.pk)
    assert (answer.status, answer.content) == ("incomplete", shown)
    usage_flush()
    # The killed process may not have metered its partial answer; nothing meters it twice.
    assert UsageRecord.objects.filter(tenant=world.acme, request_id=answer.request_id).count() <= 1
    assert len(sim.requests("/v1/chat/completions")) == 1  # never generated a second time
