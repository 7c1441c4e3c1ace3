"""Answers in a real worker run on one event loop per worker process (saas.lib.worker_loop):
the provider connection (in production, a TLS handshake before the first token) and the Redis
connection outlive an answer, where a new loop per task opened new ones every time. The task's
database work still runs in the task's thread, in its tenant."""

from __future__ import annotations

import time

import pytest
from django_tenants.utils import schema_context, tenant_context

from ai.conversations import services
from ai.conversations.tasks import answer_generate_task
from ai.models import Message
from tests.conftest import ensure_world
from tests.live import celery_worker, log_tail

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])
QUEUE = "answers-loop-test"


def test_a_worker_keeps_its_provider_connection_from_answer_to_answer(
    sim, tmp_path, monkeypatch, celery_eager
):
    celery_eager.conf.task_always_eager = False
    world = ensure_world()
    queued: list[dict] = []
    monkeypatch.setattr(services, "enqueue_for", lambda tenant, task, **kw: queued.append(kw))
    answers = []
    for question in ("First question", "Second question"):
        conversation = services.conversation_start(tenant=world.acme, user=world.alice)
        exchange = services.conversation_send(
            tenant=world.acme, conversation=conversation, content=question, user=world.alice
        )
        answers.append(exchange.answer.pk)
    env = {"OPENAI_API_KEY": "sk-loop-test", "OPENAI_BASE_URL": sim.openai_base_url}
    log = tmp_path / "worker.log"
    with celery_worker(log=log, queues=(QUEUE,), env=env, pool="prefork") as worker:
        worker.wait_ready()
        for kwargs in queued:  # one after the other, as one worker process takes them
            with tenant_context(world.acme):
                answer_generate_task.apply_async(kwargs=kwargs, queue=QUEUE)
            _wait_finished(kwargs["message_id"], log)
    with schema_context("t_acme"):
        statuses = list(Message.objects.filter(pk__in=answers).values_list("status", flat=True))
    assert statuses == ["complete", "complete"]
    ports = [request["client_port"] for request in sim.requests("/v1/chat/completions")]
    assert len(ports) == 2 and ports[0] == ports[1]  # one connection, kept alive


def _wait_finished(message_id: int, log, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with schema_context("t_acme"):
            if Message.objects.filter(pk=message_id).exclude(status="generating").exists():
                return
        time.sleep(0.05)
    raise AssertionError(log_tail(log))
