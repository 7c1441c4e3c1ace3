"""Bulk jobs: POST /api/v1/jobs answers 202 at once and the `bulk` tasks work the prompts through
the gateway (the simulator as OpenAI/Anthropic). Celery is eager here: a job's tasks run when
the submitting request commits. Covered: outputs and exactly one usage row per model call,
retries of provider outages, refusals failing one item, a worker dying mid-item (no duplicate
output or bill), cancel, the job.completed webhook, limits, tenant isolation (API and pages),
and fairness at the queue (a big job goes back behind other tenants' work after each batch)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from celery.signals import before_task_publish
from django.db import connection
from django.utils import timezone
from django_tenants.utils import schema_context, tenant_context

from ai.gateway import Caller, complete_sync
from ai.jobs.processing import item_request_id
from ai.jobs.tasks import bulk_slots, job_process_task, jobs_resume_stalled_task
from ai.models import Job, JobItem
from billing.models import UsageRecord
from saas.webhooks.models import WebhookDelivery
from saas.webhooks.services import webhook_create
from tenants.models import APIKey
from tenants.services.api_keys import api_key_create
from tests import test_webhooks
from tests.conftest import client_on, host_of
from tests.test_api import api, key_for

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])
receiver = test_webhooks.receiver  # a local HTTP server the webhooks reach

JOBS = [APIKey.Scope.JOBS]


@pytest.fixture(autouse=True)
def _jobs_settings(settings):
    settings.JOBS_RETRY_BACKOFF_S = 0  # retries come due at once (eager tasks cannot wait)
    settings.JOBS_BATCH_SIZE = 2
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True


class Jobs:
    """The jobs API with a tenant's key; queued tasks run when each request commits (or are
    left queued with `run=False`)."""

    def __init__(self, key: str, capture, host: str = "localhost") -> None:
        self.client = api(host, key)
        self.capture = capture

    def submit(self, body: dict, *, run: bool = True):
        with self.capture(execute=run):
            return self.client.post(
                "/api/v1/jobs", json.dumps(body), content_type="application/json"
            )

    def get(self, path: str = ""):
        return self.client.get(f"/api/v1/jobs{path}")

    def cancel(self, job_id: str):
        with self.capture(execute=True):
            return self.client.post(f"/api/v1/jobs/{job_id}/cancel")


@pytest.fixture
def acme_jobs(world, django_capture_on_commit_callbacks) -> Jobs:
    return Jobs(key_for(world.acme, scopes=JOBS), django_capture_on_commit_callbacks)


@pytest.fixture
def globex_jobs(world, django_capture_on_commit_callbacks) -> Jobs:
    return Jobs(key_for(world.globex, scopes=JOBS), django_capture_on_commit_callbacks)


def usage_of(tenant, job_id: str) -> list[str]:
    rows = UsageRecord.objects.filter(tenant=tenant, request_id__startswith=f"job:{job_id}:")
    return sorted(rows.values_list("request_id", flat=True))


def results(jobs: Jobs, job_id: str) -> list[dict]:
    response = jobs.get(f"/{job_id}/results")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_it_runs_every_prompt_in_the_background_and_bills_each_call_once(acme_jobs, world, sim):
    body = {
        "items": [
            {"prompt": "Summarise the refund policy", "custom_id": "a"},
            {"prompt": "Translate hello to French", "custom_id": "b"},
            {"prompt": "Name three colours", "custom_id": "c"},
        ],
        "system": "Be brief.",
    }
    response = acme_jobs.submit(body)
    assert response.status_code == 202, response.content
    created = response.json()
    assert created["status"] == "queued" and created["total_items"] == 3  # at the time
    assert response["Location"] == f"/api/v1/jobs/{created['id']}"

    job = acme_jobs.get(f"/{created['id']}").json()
    assert job["status"] == "completed" and job["progress"] == 100
    assert (job["succeeded_items"], job["failed_items"], job["cancelled_items"]) == (3, 0, 0)
    assert job["finished_at"] and job["output_tokens"] > 0
    items = results(acme_jobs, created["id"])
    assert [item["custom_id"] for item in items] == ["a", "b", "c"]
    assert items[0]["output"].startswith("Simulated answer: Summarise the refund")
    assert all(item["status"] == "succeeded" and item["attempts"] == 1 for item in items)
    # One usage row per item, under the ids derived from the job and the item's index.
    expected = [f"job:{created['id']}:{index}" for index in range(3)]
    assert usage_of(world.acme, created["id"]) == expected
    assert sorted(item["request_id"] for item in items) == expected
    assert len(sim.requests("/v1/chat/completions")) == 3
    assert sim.requests("/v1/chat/completions")[0]["body"]["messages"][0]["role"] == "system"
    assert [j["id"] for j in acme_jobs.get().json()["results"]] == [created["id"]]


def test_it_retries_an_item_while_providers_are_down_then_succeeds(acme_jobs, world, sim):
    sim.script(*[{"fault": "status", "code": 503}] * 4)  # every provider and retry of one call
    created = acme_jobs.submit({"prompts": ["What is two plus two"]}).json()
    (item,) = results(acme_jobs, created["id"])
    assert item["status"] == "succeeded" and item["attempts"] == 2 and not sim.pending()
    # Two model calls, two usage rows (the failed one and the retry), each under its own id.
    first = f"job:{created['id']}:0"
    assert usage_of(world.acme, created["id"]) == [first, f"{first}:retry1"]
    assert item["request_id"] == f"{first}:retry1"
    assert UsageRecord.objects.get(tenant=world.acme, request_id=first).outcome == "failed"


def test_it_gives_up_on_an_outage_after_the_attempts_allowed(acme_jobs, world, sim, settings):
    settings.JOBS_MAX_ATTEMPTS = 2
    sim.script(*[{"fault": "status", "code": 503}] * 8)
    created = acme_jobs.submit({"prompts": ["Hello there"]}).json()
    job = acme_jobs.get(f"/{created['id']}").json()
    (item,) = results(acme_jobs, created["id"])
    assert item["status"] == "failed" and item["attempts"] == 2
    assert "gave up after 2 attempts" in item["error"]
    assert job["status"] == "failed" and "Every item failed" in job["error"]


def test_it_fails_an_item_the_provider_refuses_and_completes_the_job(acme_jobs, world, sim):
    sim.script({"fault": "status", "code": 400, "message": "Invalid prompt"})
    created = acme_jobs.submit({"prompts": ["First question", "Second question"]}).json()
    job = acme_jobs.get(f"/{created['id']}").json()
    assert job["status"] == "completed" and job["progress"] == 100
    assert (job["succeeded_items"], job["failed_items"]) == (1, 1)
    refused, answered = results(acme_jobs, created["id"])
    assert refused["status"] == "failed" and refused["attempts"] == 1 and refused["error"]
    assert refused["output"] == "" and answered["status"] == "succeeded"
    failed_only = acme_jobs.get(f"/{created['id']}/results?status=failed").json()["results"]
    assert [item["index"] for item in failed_only] == [0]
    assert len(usage_of(world.acme, created["id"])) == 2  # refused calls are metered too


def test_it_bills_once_and_answers_once_when_a_worker_dies_mid_item(acme_jobs, world, sim):
    created = acme_jobs.submit({"prompts": ["Alpha question", "Beta question"]}, run=False).json()
    with tenant_context(world.acme):
        job = Job.objects.get(public_id=created["id"])
        request_id = item_request_id(job, 0, 1)
        # A worker took item 0, made its model call (metered), then was killed before it
        # stored the answer: the item is left running, and its lease has since passed.
        complete_sync(
            caller=Caller(world.acme, "chat", request_id, api_key_id=job.api_key_id),
            messages=[{"role": "user", "content": "Alpha question"}],
        )
        JobItem.objects.filter(job=job, index=0).update(
            status=JobItem.Status.RUNNING, claims=1, claim_token=uuid.uuid4(),
            lease_expires_at=timezone.now() - timedelta(seconds=1),
        )  # fmt: skip
        job_process_task.delay(job_id=job.pk)  # the redelivered task
    items = results(acme_jobs, created["id"])
    assert [item["status"] for item in items] == ["succeeded", "succeeded"]
    assert items[0]["output"].startswith("Simulated answer: Alpha question")
    assert items[0]["request_id"] == request_id  # the same call id, so the ledger kept one row
    assert usage_of(world.acme, created["id"]) == [request_id, item_request_id(job, 1, 1)]
    assert len(sim.requests("/v1/chat/completions")) == 3  # the dead call was made again
    with tenant_context(world.acme):
        assert JobItem.objects.get(job=job, index=0).claims == 2
    assert acme_jobs.get(f"/{created['id']}").json()["succeeded_items"] == 2


def test_it_cancels_pending_items_while_running_ones_finish(acme_jobs, world, sim):
    created = acme_jobs.submit({"prompts": ["One", "Two", "Three", "Four"]}, run=False).json()
    with tenant_context(world.acme):
        job = Job.objects.get(public_id=created["id"])
        JobItem.objects.filter(job=job, index=0).update(  # a live worker holds item 0
            status=JobItem.Status.RUNNING, claims=1, claim_token=uuid.uuid4(),
            lease_expires_at=timezone.now() + timedelta(minutes=5),
        )  # fmt: skip
    response = acme_jobs.cancel(created["id"])
    assert response.status_code == 200
    cancelled = response.json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_items"] == 3
    assert cancelled["finished_at"] is None  # item 0 is still running
    again = acme_jobs.cancel(created["id"]).json()
    assert again["status"] == "cancelled" and again["cancelled_items"] == 3  # idempotent
    with tenant_context(world.acme):
        job_process_task.delay(job_id=job.pk)  # a task of the job still in the queue
    statuses = [item["status"] for item in results(acme_jobs, created["id"])]
    assert statuses == ["running", "cancelled", "cancelled", "cancelled"]
    assert not sim.requests()  # nothing cancelled was sent to a provider
    with tenant_context(world.acme):
        # The worker holding item 0 died: once its lease passes, the job finishes, cancelled.
        JobItem.objects.filter(job=job, index=0).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        job_process_task.delay(job_id=job.pk)
        assert not WebhookDelivery.objects.exists()
    final = acme_jobs.get(f"/{created['id']}").json()
    assert final["status"] == "cancelled" and final["cancelled_items"] == 4 and final["finished_at"]


def test_it_sends_job_completed_to_the_tenants_own_endpoints(acme_jobs, world, sim, receiver):
    acme_key, _ = api_key_create(tenant=world.acme, name="Hooks", scopes=["webhooks"])
    globex_key, _ = api_key_create(tenant=world.globex, name="Hooks", scopes=["webhooks"])
    for tenant, key, path in ((world.acme, acme_key, "/acme"), (world.globex, globex_key, "/g")):
        webhook_create(tenant=tenant, url=receiver.url(path), events=["job.completed"], api_key=key)
    created = acme_jobs.submit({"prompts": ["Ping the hook"]}).json()
    with schema_context("t_acme"):
        (delivery,) = WebhookDelivery.objects.all()
        assert delivery.event_type == "job.completed" and delivery.status == "succeeded"
        data = delivery.payload["data"]
    assert data["job_id"] == created["id"] and data["status"] == "completed"
    assert data["succeeded_items"] == 1 and "Ping the hook" not in json.dumps(data)
    with schema_context("t_globex"):
        assert not WebhookDelivery.objects.exists()
    assert [path for path, _, _ in receiver.received] == ["/acme"]


def test_it_refuses_jobs_over_the_limits_with_clear_problems(acme_jobs, world, settings, sim):
    settings.JOBS_MAX_ITEMS = 3
    settings.JOBS_MAX_PROMPT_CHARS = 20
    settings.JOBS_MAX_ACTIVE_PER_TENANT = 1
    cases = [
        ({"prompts": ["a", "b", "c", "d"]}, "items"),
        ({"items": [{"prompt": "x" * 21}]}, "items.0.prompt"),
        ({"items": [{"prompt": "a", "custom_id": "1"}, {"prompt": "b", "custom_id": "1"}]},
         "items.1.custom_id"),
        ({"prompts": []}, "items"),
        ({}, "items"),
        ({"prompts": ["a"], "items": [{"prompt": "b"}]}, "items"),
        ({"prompts": ["a"], "model": "no-such-model"}, "model"),
        ({"prompts": ["a"], "model": "gpt-4o"}, "model"),  # a standard-tier model, free plan
        ({"prompts": ["a"], "system": "s" * 21}, "system"),
    ]  # fmt: skip
    for body, field in cases:
        response = acme_jobs.submit(body)
        assert response.status_code == 400, (body, response.content)
        assert response["Content-Type"] == "application/problem+json"
        assert field in response.json()["errors"], (body, response.json())
    assert acme_jobs.submit({"prompts": ["queued"]}, run=False).status_code == 202
    refused = acme_jobs.submit({"prompts": ["one too many"]})
    assert refused.status_code == 429 and refused["Retry-After"]
    assert "1 jobs queued or running" in refused.json()["detail"]
    with tenant_context(world.acme):
        assert Job.objects.count() == 1
    no_scope = api("localhost", key_for(world.acme, scopes=["chat"]))
    assert no_scope.get("/api/v1/jobs").status_code == 403


def test_it_answers_another_tenants_job_ids_like_missing_ones(acme_jobs, globex_jobs, world, sim):
    created = acme_jobs.submit({"prompts": ["Acme only"]}, run=False).json()
    for path in (f"/{created['id']}", f"/{created['id']}/results", f"/{uuid.uuid4()}"):
        response = globex_jobs.get(path)
        assert response.status_code == 404 and "Acme only" not in response.content.decode()
    assert globex_jobs.cancel(created["id"]).status_code == 404
    assert globex_jobs.get().json()["results"] == []
    job = acme_jobs.get(f"/{created['id']}").json()
    assert job["status"] == "queued" and job["cancelled_items"] == 0
    assert not sim.requests()


def test_it_lists_only_the_tenants_jobs_on_the_jobs_page(
    acme_jobs, globex_jobs, world, sim, alice_client, bob_client, charlie_on_acme
):
    acme_job = acme_jobs.submit({"prompts": ["Acme page"]}, run=False).json()["id"]
    globex_job = globex_jobs.submit({"prompts": ["Globex page"]}, run=False).json()["id"]
    page = alice_client.get("/jobs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert acme_job in html and globex_job not in html
    assert 'hx-trigger="every 3s"' in html  # refreshes itself while a job is queued or running
    assert charlie_on_acme.get("/jobs/").status_code == 404  # not a member of acme
    assert charlie_on_acme.get(f"/jobs/{acme_job}/").status_code == 404
    assert charlie_on_acme.post(f"/jobs/{acme_job}/cancel/").status_code == 404
    assert alice_client.get(f"/jobs/{globex_job}/").status_code == 404
    alice_on_globex = client_on(host_of(world.globex), world.alice)
    assert alice_on_globex.get("/jobs/").status_code == 404
    detail = bob_client.get(f"/jobs/{acme_job}/")
    assert detail.status_code == 200
    assert "Cancel job" not in detail.content.decode()  # bob is a member, not its submitter
    assert bob_client.post(f"/jobs/{acme_job}/cancel/").status_code == 403
    assert "Cancel job" in alice_client.get(f"/jobs/{acme_job}/").content.decode()
    assert alice_client.post(f"/jobs/{acme_job}/cancel/").status_code == 302
    assert acme_jobs.get(f"/{acme_job}").json()["status"] == "cancelled"
    assert globex_jobs.get(f"/{globex_job}").json()["status"] == "queued"
    panel = alice_client.get("/jobs/", HTTP_HX_REQUEST="true").content.decode()
    assert panel.startswith('<div id="jobs-panel"') and "every 3s" not in panel


def test_it_queues_again_a_job_whose_tasks_were_lost(acme_jobs, world, sim, settings):
    created = acme_jobs.submit({"prompts": ["Lost in the queue"]}, run=False).json()
    jobs_resume_stalled_task.delay()  # nothing stalled yet: a fresh job is left alone
    assert acme_jobs.get(f"/{created['id']}").json()["status"] == "queued"
    with tenant_context(world.acme):
        an_hour_ago = timezone.now() - timedelta(hours=1)
        Job.objects.filter(public_id=created["id"]).update(created_at=an_hour_ago)
    jobs_resume_stalled_task.delay()  # the beat, on the public schema, visits every tenant
    assert acme_jobs.get(f"/{created['id']}").json()["status"] == "completed"


def test_it_shows_an_empty_jobs_page(world, alice_client):
    assert "No jobs yet" in alice_client.get("/jobs/").content.decode()


# --- fairness ------------------------------------------------------------------------------


class Broker:
    """The tasks published to the broker, in order (the queue is FIFO), run one at a time
    the way a single worker would take them."""

    def __init__(self) -> None:
        self.published: list[tuple[dict, dict]] = []

    def record(self, sender=None, body=None, headers=None, **kwargs) -> None:
        if sender == job_process_task.name:
            self.published.append((body[1], dict(headers)))

    def run_next(self) -> str:
        kwargs, headers = self.published.pop(0)
        connection.set_schema_to_public()  # where a worker's connection is between tasks
        job_process_task.apply(kwargs=kwargs, headers={"_schema_name": headers["_schema_name"]})
        return headers["_schema_name"]


@pytest.fixture
def broker(celery_eager):
    broker = Broker()
    celery_eager.conf.task_always_eager = False  # published for real, run by `run_next`
    before_task_publish.connect(broker.record)
    yield broker
    before_task_publish.disconnect(broker.record)
    celery_eager.conf.task_always_eager = True
    with celery_eager.connection_for_write() as connection:
        connection.default_channel.queue_purge("bulk")


def test_it_sends_a_big_job_behind_other_tenants_work_after_each_batch(
    acme_jobs, globex_jobs, world, sim, settings, broker
):
    settings.JOBS_TENANT_CONCURRENCY = 1
    settings.JOBS_BATCH_SIZE = 2
    big = acme_jobs.submit({"prompts": [f"Acme question {n}" for n in range(6)]}).json()
    small = globex_jobs.submit({"prompts": ["Globex question"]}).json()
    ran = [broker.run_next()]  # acme's first batch, then its continuation goes to the back
    assert acme_jobs.get(f"/{big['id']}").json()["succeeded_items"] == 2
    while broker.published:
        ran.append(broker.run_next())
    assert ran == ["t_acme", "t_globex", "t_acme", "t_acme"]  # globex waited one batch only
    assert globex_jobs.get(f"/{small['id']}").json()["status"] == "completed"
    assert acme_jobs.get(f"/{big['id']}").json()["status"] == "completed"

    # A tenant at its cap (a worker holds acme's only slot) goes to the back without working;
    # the other tenant's task runs meanwhile.
    more = acme_jobs.submit({"prompts": ["Acme again"]}).json()
    other = globex_jobs.submit({"prompts": ["Globex again"]}).json()
    lease = bulk_slots().acquire("t_acme", limit=1)
    try:
        assert [broker.run_next(), broker.run_next()] == ["t_acme", "t_globex"]
        assert acme_jobs.get(f"/{more['id']}").json()["status"] == "queued"
        assert globex_jobs.get(f"/{other['id']}").json()["status"] == "completed"
        assert [headers["_schema_name"] for _, headers in broker.published] == ["t_acme"]
    finally:
        lease.release()
    broker.run_next()
    assert acme_jobs.get(f"/{more['id']}").json()["status"] == "completed"
