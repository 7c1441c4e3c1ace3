"""A chat answer survives its worker being SIGKILLed mid-stream: the broker still holds the
task (acks late, rejected on worker loss), and the redelivered run ends the answer incomplete
with exactly what the page was shown, once; a further duplicate run changes nothing; the
answer is never generated twice nor metered twice.

As in test_ingestion_kill, the redelivery itself (after the broker's visibility timeout) is
not waited for: the test runs the task's work again in-process. The task goes through a queue
of its own, so nothing left behind reaches another test's worker."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django_tenants.utils import schema_context, tenant_context

from ai.conversations import live, services
from ai.conversations.generation import answer_generate
from ai.conversations.tasks import answer_generate_task
from ai.gateway.ledger_writer import usage_flush
from ai.models import Message
from billing.models import UsageRecord
from saas.lib.redis import async_client
from tests.conftest import ensure_world
from tests.live import broker_forget, broker_unacked, celery_worker, log_tail

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])
QUEUE = "answers-kill-test"


def streamed(key: str) -> list[dict]:
    async def read() -> list[dict]:
        return [json.loads(e.json) for e in await live.entries_after(async_client(), key, 0)]

    return async_to_sync(read)()


def test_a_worker_killed_mid_answer_leaves_it_incomplete_once_never_twice(
    sim, tmp_path, monkeypatch, celery_eager
):
    celery_eager.conf.task_always_eager = False  # this task goes to the real worker
    sim.configure(tokens_per_second=20, answer_tokens=400)
    world = ensure_world()
    conversation = services.conversation_start(tenant=world.acme, user=world.alice)
    sent: list = []
    monkeypatch.setattr(services, "enqueue_for", lambda tenant, task, **kw: sent.append(kw))
    exchange = services.conversation_send(
        tenant=world.acme, conversation=conversation, content="Tell me everything",
        user=world.alice,
    )  # fmt: skip
    key = live.stream_key("t_acme", str(exchange.answer.public_id))
    env = {"OPENAI_API_KEY": "sk-kill-test", "OPENAI_BASE_URL": sim.openai_base_url}
    with celery_worker(log=tmp_path / "worker.log", queues=(QUEUE,), env=env) as worker:
        worker.wait_ready()
        with tenant_context(world.acme):
            task_id = answer_generate_task.apply_async(kwargs=sent[0], queue=QUEUE).id
        try:
            deadline = time.monotonic() + 60
            while len(streamed(key)) < 5:
                assert time.monotonic() < deadline, log_tail(worker.log)
                time.sleep(0.05)
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(10)
            assert broker_unacked(task_id), "the broker must still hold the task for redelivery"
            shown = "".join(e["text"] for e in streamed(key) if e["type"] == "delta")

            # The redelivered task's work, then a duplicate of it.
            connection.set_schema_to_public()
            for _ in range(2):
                async_to_sync(answer_generate)(tenant=world.acme, **sent[0])
        finally:
            broker_forget(task_id, QUEUE)

    events = streamed(key)
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
