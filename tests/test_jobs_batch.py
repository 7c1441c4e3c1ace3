"""Bulk jobs in batch mode (`"mode": "batch"`): the items go to the provider as ONE batch
(OpenAI Batch, Anthropic Message Batches; the simulator speaks both, through the official SDKs),
the job waits `submitted` while a task polls it, and each result is stored and metered once,
under the item's own request id, at the batch price (half the catalog price by default).
Celery is eager: the submit task runs when the request commits, its first look at the batch
right after; `batch_polls` makes the simulator's batch stay in progress for that many looks."""

from __future__ import annotations

import pytest
from django_tenants.utils import tenant_context

from ai.catalog.models import ModelPrice
from ai.gateway import BatchPrompt, batch_collect_sync, batch_poll_sync
from ai.jobs.batch import _fields, _finish, _poll, batch_custom_id, job_ticket
from ai.jobs.tasks import job_process_task
from ai.models import Job, JobItem
from billing.models import UsageRecord
from tests import test_jobs
from tests.test_jobs import results

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])
# The jobs API as acme's and globex's keys see it (fixtures of test_jobs).
acme_jobs, globex_jobs = test_jobs.acme_jobs, test_jobs.globex_jobs

PROMPTS = ["Summarise the refund policy", "Translate hello to French", "Name three colours"]


@pytest.fixture(autouse=True)
def _jobs_settings(settings):
    settings.JOBS_RETRY_BACKOFF_S = 0  # retries come due at once (eager tasks cannot wait)


@pytest.fixture
def long_answers(sim):
    sim.configure(answer_tokens=200)  # costs well above rounding


def rows_of(tenant, job_id: str) -> dict[str, UsageRecord]:
    rows = UsageRecord.objects.filter(tenant=tenant, request_id__startswith=f"job:{job_id}:")
    return {row.request_id: row for row in rows}


def job_of(tenant, job_id: str) -> Job:
    with tenant_context(tenant):
        return Job.objects.get(public_id=job_id)


def poll(tenant, job_id: str) -> None:
    """The poll task, as beat's continuation runs it."""
    with tenant_context(tenant):
        job_process_task.delay(job_id=job_of(tenant, job_id).pk)


@pytest.mark.parametrize(
    ("model", "chat_path"),
    [("gpt-4o-mini", "/v1/chat/completions"), ("claude-haiku", "/v1/messages")],
)
def test_it_sends_the_items_as_one_batch_and_bills_each_once_at_half_price(
    acme_jobs, world, sim, long_answers, model, chat_path
):
    body = {"prompts": PROMPTS, "model": model, "system": "Be brief."}
    created = acme_jobs.submit({**body, "mode": "batch"})
    assert created.status_code == 202, created.content
    batch_job = created.json()
    assert batch_job["mode"] == "batch" and batch_job["status"] == "queued"
    # The simulator saw one batch of three requests, and not one chat call.
    (batch,) = sim.batches()
    assert batch["custom_ids"] == [batch_custom_id(i) for i in range(3)]
    assert sim.requests(chat_path) == []
    job = acme_jobs.get(f"/{batch_job['id']}").json()
    assert job["status"] == "completed" and job["succeeded_items"] == 3 and job["finished_at"]
    assert job["batch_status"] in ("completed", "ended")
    items = results(acme_jobs, batch_job["id"])
    assert [item["status"] for item in items] == ["succeeded"] * 3
    assert items[1]["output"].startswith("Simulated answer: Translate hello to French")
    assert all(item["model"] == model and item["attempts"] == 1 for item in items)
    rows = rows_of(world.acme, batch_job["id"])
    assert sorted(rows) == [f"job:{batch_job['id']}:{i}" for i in range(3)]
    assert all(row.outcome == "ok" and row.model == model for row in rows.values())
    assert sorted(item["request_id"] for item in items) == sorted(rows)

    # The same prompts sent direct: same tokens, twice the price.
    direct = acme_jobs.submit(body).json()
    assert len(sim.requests(chat_path)) == 3
    direct_items = results(acme_jobs, direct["id"])
    direct_rows = rows_of(world.acme, direct["id"])
    for item, plain in zip(items, direct_items, strict=True):
        assert (item["input_tokens"], item["output_tokens"]) == (
            plain["input_tokens"],
            plain["output_tokens"],
        )
        assert item["cost_micros"] > 0 and abs(2 * item["cost_micros"] - plain["cost_micros"]) <= 1
        assert rows[item["request_id"]].cost_micros == item["cost_micros"]
        assert direct_rows[plain["request_id"]].cost_micros == plain["cost_micros"]
    assert job["cost_micros"] == sum(item["cost_micros"] for item in items)


def test_it_takes_the_discount_from_the_price_version(acme_jobs, world, sim, long_answers):
    ModelPrice.objects.filter(model__key="gpt-4o-mini").update(batch_discount_percent=25)
    batch_job = acme_jobs.submit({"prompts": PROMPTS[:1], "model": "gpt-4o-mini", "mode": "batch"})
    direct = acme_jobs.submit({"prompts": PROMPTS[:1], "model": "gpt-4o-mini"}).json()
    (item,) = results(acme_jobs, batch_job.json()["id"])
    (plain,) = results(acme_jobs, direct["id"])
    assert abs(item["cost_micros"] - plain["cost_micros"] * 0.75) <= 1


def test_it_waits_submitted_until_the_batch_ends_and_meters_nothing_twice(
    acme_jobs, world, sim, long_answers
):
    sim.configure(batch_polls=1)
    created = acme_jobs.submit({"prompts": PROMPTS, "model": "gpt-4o-mini", "mode": "batch"})
    job_id = created.json()["id"]
    waiting = acme_jobs.get(f"/{job_id}").json()
    assert waiting["status"] == "submitted" and waiting["batch_status"] == "in_progress"
    assert [item["status"] for item in results(acme_jobs, job_id)] == ["running"] * 3
    assert rows_of(world.acme, job_id) == {}  # nothing is billed before the results are read

    # A worker read the results and metered them, then died before storing any outcome.
    job = job_of(world.acme, job_id)
    with tenant_context(world.acme):
        ticket = job_ticket(job)
        ended = batch_poll_sync(tenant=world.acme, ticket=ticket)
        assert ended.ended
        prompts = [
            BatchPrompt(batch_custom_id(item.index), item.request_id, item.input)
            for item in JobItem.objects.filter(job=job)
        ]
        batch_collect_sync(
            tenant=world.acme, feature="chat", ticket=ticket, batch=ended, prompts=prompts,
            priced_at=job.started_at,
        )  # fmt: skip
    assert len(rows_of(world.acme, job_id)) == 3

    poll(world.acme, job_id)  # the redelivered poll stores the outcomes, bills nothing more
    poll(world.acme, job_id)  # and a second poll of the finished job does nothing
    with tenant_context(world.acme):
        _poll(world.acme, job_of(world.acme, job_id))  # even one that raced past the check
        # A second collector that read the results alongside the first: meters nothing new,
        # and storing its outcomes changes no item and no count.
        again = batch_collect_sync(
            tenant=world.acme, feature="chat", ticket=ticket, batch=ended, prompts=prompts,
            priced_at=job.started_at,
        )  # fmt: skip
        by_id = {batch_custom_id(item.index): item.pk for item in JobItem.objects.filter(job=job)}
        _finish(job, None, {by_id[o.custom_id]: _fields(o) for o in again})
    final = acme_jobs.get(f"/{job_id}").json()
    assert final["status"] == "completed" and final["succeeded_items"] == 3
    rows = rows_of(world.acme, job_id)
    assert len(rows) == 3
    assert final["cost_micros"] == sum(row.cost_micros for row in rows.values()) > 0
    items = results(acme_jobs, job_id)
    assert all(item["status"] == "succeeded" and item["attempts"] == 1 for item in items)
    assert len(sim.batches()) == 1


def test_it_fails_only_the_item_the_provider_refused(acme_jobs, world, sim):
    sim.script({"fault": "status", "code": 400, "custom_id": batch_custom_id(1)})
    created = acme_jobs.submit({"prompts": PROMPTS, "model": "claude-haiku", "mode": "batch"})
    job_id = created.json()["id"]
    job = acme_jobs.get(f"/{job_id}").json()
    assert job["status"] == "completed" and (job["succeeded_items"], job["failed_items"]) == (2, 1)
    first, refused, last = results(acme_jobs, job_id)
    assert refused["status"] == "failed" and "refused" in refused["error"] and not refused["output"]
    assert first["status"] == last["status"] == "succeeded"
    rows = rows_of(world.acme, job_id)
    assert len(rows) == 3  # the refused request is metered too, at no cost
    assert rows[refused["request_id"]].outcome == "failed"
    assert rows[refused["request_id"]].cost_micros == 0


def test_it_fails_the_items_of_a_batch_that_expired(acme_jobs, world, sim):
    sim.script({"fault": "batch_expired", "path": "/v1/batches"})
    created = acme_jobs.submit({"prompts": PROMPTS[:2], "model": "gpt-4o-mini", "mode": "batch"})
    job = acme_jobs.get(f"/{created.json()['id']}").json()
    assert job["status"] == "failed" and job["failed_items"] == 2
    assert "expired" in job["error"]
    assert all("expired" in item["error"] for item in results(acme_jobs, job["id"]))
    rows = rows_of(world.acme, job["id"])
    assert len(rows) == 2 and {row.outcome for row in rows.values()} == {"failed"}


def test_it_sends_the_batch_again_after_an_outage_under_new_request_ids(acme_jobs, world, sim):
    sim.script(*[{"fault": "status", "code": 503}] * 4)  # every provider and retry of one call
    created = acme_jobs.submit({"prompts": PROMPTS[:2], "model": "gpt-4o-mini", "mode": "batch"})
    job_id = created.json()["id"]
    waiting = acme_jobs.get(f"/{job_id}").json()
    assert waiting["status"] == "running" and not sim.batches()
    assert [item["status"] for item in results(acme_jobs, job_id)] == ["pending"] * 2
    poll(world.acme, job_id)  # the continuation, once the retry is due
    job = acme_jobs.get(f"/{job_id}").json()
    assert job["status"] == "completed" and job["succeeded_items"] == 2
    rows = rows_of(world.acme, job_id)
    first = f"job:{job_id}:0"
    assert sorted(rows) == sorted(
        [first, f"job:{job_id}:1", f"{first}:retry1", f"job:{job_id}:1:retry1"]
    )
    assert rows[first].outcome == "failed" and rows[f"{first}:retry1"].outcome == "ok"
    assert len(sim.batches()) == 1


def test_it_cancels_the_provider_batch_and_the_items_it_did_not_process(acme_jobs, world, sim):
    sim.configure(batch_polls=5)
    created = acme_jobs.submit({"prompts": PROMPTS, "model": "gpt-4o-mini", "mode": "batch"})
    job_id = created.json()["id"]
    assert acme_jobs.get(f"/{job_id}").json()["status"] == "submitted"
    response = acme_jobs.cancel(job_id)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    (batch,) = sim.batches()
    assert [r["path"] for r in sim.requests() if r["path"].endswith("/cancel")] == [
        f"/v1/batches/{batch['id']}/cancel"
    ]
    job = acme_jobs.get(f"/{job_id}").json()
    assert job["status"] == "cancelled" and job["cancelled_items"] == 3 and job["finished_at"]
    assert [item["status"] for item in results(acme_jobs, job_id)] == ["cancelled"] * 3
    assert rows_of(world.acme, job_id) == {}  # the provider processed nothing: no call to bill


def test_it_cancels_a_batch_job_before_it_is_sent(acme_jobs, world, sim):
    created = acme_jobs.submit({"prompts": PROMPTS, "mode": "batch"}, run=False).json()
    cancelled = acme_jobs.cancel(created["id"]).json()
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_items"] == 3
    poll(world.acme, created["id"])  # its task, still in the queue
    assert not sim.batches() and not sim.requests()


def test_it_refuses_batch_mode_for_models_without_a_batch_api(acme_jobs, world, sim, settings):
    settings.OPENAI_COMPATIBLE_BASE_URL = sim.openai_base_url  # oss-chat is usable direct
    for body in (
        {"prompts": ["a"], "model": "oss-chat", "mode": "batch"},
        {"prompts": ["a"], "mode": "sometimes"},
    ):
        response = acme_jobs.submit(body)
        assert response.status_code == 400, response.content
        assert response["Content-Type"] == "application/problem+json"
        assert "mode" in response.json()["errors"]
    (reason,) = acme_jobs.submit({"prompts": ["a"], "model": "oss-chat", "mode": "batch"}).json()[
        "errors"
    ]["mode"]
    assert "oss-chat" in reason and "direct" in reason
    assert acme_jobs.submit({"prompts": ["a"], "model": "oss-chat"}).status_code == 202
    with tenant_context(world.acme):
        assert Job.objects.filter(mode=Job.Mode.BATCH).count() == 0
    assert not sim.batches()


def test_it_refuses_batch_mode_when_only_the_local_model_is_configured(acme_jobs, world):
    response = acme_jobs.submit({"prompts": ["a"], "mode": "batch"})  # no provider keys here
    assert response.status_code == 400
    assert "local-extractive" in response.json()["errors"]["mode"][0]


def test_it_answers_another_tenants_batch_job_like_a_missing_one(
    acme_jobs, globex_jobs, world, sim
):
    sim.configure(batch_polls=5)
    created = acme_jobs.submit({"prompts": ["Acme only"], "model": "gpt-4o-mini", "mode": "batch"})
    job_id = created.json()["id"]
    for path in (f"/{job_id}", f"/{job_id}/results"):
        response = globex_jobs.get(path)
        assert response.status_code == 404 and "Acme only" not in response.content.decode()
    assert globex_jobs.cancel(job_id).status_code == 404
    assert globex_jobs.get().json()["results"] == []
    assert acme_jobs.get(f"/{job_id}").json()["status"] == "submitted"
    assert not [r for r in sim.requests() if r["path"].endswith("/cancel")]
