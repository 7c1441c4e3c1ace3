"""Answers in a real worker run on one event loop per worker process (saas.lib.worker_loop):
the provider connection (in production, a TLS handshake before the first token) and the Redis
connection outlive an answer, where a new loop per task opened new ones every time. The task's
database work still runs in the task's thread, in its tenant, also while the answer winds down
after Celery's soft time limit."""

from __future__ import annotations

import json
import time

import pytest
from asgiref.sync import async_to_sync
from django_tenants.utils import schema_context, tenant_context

from ai.conversations import live, services
from ai.conversations.tasks import answer_generate_task
from ai.jobs.services import JobInput, job_submit
from ai.models import Job, Message
from saas.lib.redis import async_client
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


def test_an_answer_out_of_time_ends_incomplete_with_what_was_shown(
    sim, tmp_path, monkeypatch, celery_eager
):
    """Celery's soft time limit strikes mid-answer: the answer ends incomplete with exactly the
    text the page was shown (and the stream's `end`), instead of staying "generating" and
    blocking its conversation for good."""
    celery_eager.conf.task_always_eager = False
    sim.configure(tokens_per_second=20, answer_tokens=400)  # 20 s: far past the limit below
    world = ensure_world()
    queued: list[dict] = []
    monkeypatch.setattr(services, "enqueue_for", lambda tenant, task, **kw: queued.append(kw))
    conversation = services.conversation_start(tenant=world.acme, user=world.alice)
    exchange = services.conversation_send(
        tenant=world.acme, conversation=conversation, content="Tell me everything",
        user=world.alice,
    )  # fmt: skip
    env = {"OPENAI_API_KEY": "sk-loop-test", "OPENAI_BASE_URL": sim.openai_base_url}
    log = tmp_path / "worker.log"
    with celery_worker(log=log, queues=(QUEUE,), env=env, pool="prefork") as worker:
        worker.wait_ready()
        with tenant_context(world.acme):
            answer_generate_task.apply_async(kwargs=queued[0], queue=QUEUE, soft_time_limit=2)
        key = live.stream_key("t_acme", str(exchange.answer.public_id))
        deadline = time.monotonic() + 60
        while not (events := async_to_sync(_events)(key)) or events[-1]["type"] != "end":
            assert time.monotonic() < deadline, log_tail(log)  # the end comes last, once stored
            time.sleep(0.05)
    with schema_context("t_acme"):
        answer = Message.objects.get(pk=exchange.answer.pk)
    shown = "".join(e["text"] for e in events if e["type"] == "delta")
    assert answer.status == "incomplete" and shown and answer.content == shown
    assert events[-1]["status"] == "incomplete"


async def _events(key: str) -> list[dict]:
    return [json.loads(entry.json) for entry in await live.entries_after(async_client(), key, 0)]


def test_a_bulk_job_keeps_its_provider_connection_from_item_to_item(sim, tmp_path, celery_eager):
    """Items of a bulk job are model calls one after the other in a worker: over one kept-alive
    provider connection (in production, one TLS handshake for the job, not one per item)."""
    celery_eager.conf.task_always_eager = False
    world = ensure_world()
    env = {"OPENAI_API_KEY": "sk-loop-test", "OPENAI_BASE_URL": sim.openai_base_url}
    log = tmp_path / "worker.log"
    with celery_worker(log=log, queues=("bulk",), env=env, pool="prefork") as worker:
        worker.wait_ready()
        job = job_submit(tenant=world.acme, inputs=[JobInput("One"), JobInput("Two"),
                                                     JobInput("Three")])  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            with schema_context("t_acme"):
                job = Job.objects.get(pk=job.pk)
            if job.finished_at is not None:
                break
            assert time.monotonic() < deadline, log_tail(log)
            time.sleep(0.1)
    assert job.status == "completed" and job.succeeded_items == 3
    ports = {request["client_port"] for request in sim.requests("/v1/chat/completions")}
    assert len(ports) == 1
