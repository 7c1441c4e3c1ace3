"""Model calls in a real worker run on one event loop per worker process (saas.lib.worker_loop):
the provider connection (in production, a TLS handshake per call) outlives a task's call, where
a new loop per call opened a new one every time. (Chat answers run in the answer runner, which
keeps its connections the same way: tests/test_answer_runner.py.)"""

from __future__ import annotations

import time

import pytest
from django_tenants.utils import schema_context

from ai.jobs.services import JobInput, job_submit
from ai.models import Job
from tests.conftest import ensure_world
from tests.live import celery_worker, log_tail

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])


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
