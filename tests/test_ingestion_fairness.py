"""Ingestion is fair between tenants: per-tenant slots (a Redis lease semaphore) cap how many of
one tenant's documents are ingested at once, so another tenant's upload is not stuck behind a
backlog. Proved on a real worker over the broker."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_prerun
from django_tenants.utils import schema_context

from retrieval.models import Document
from retrieval.services import document_upload
from retrieval.tasks import document_ingest_task
from saas.celery import app
from saas.lib.semaphore import Semaphore
from tests.conftest import ensure_world


@pytest.fixture
def semaphore():
    """A semaphore of its own per test, deleted afterwards."""
    slots = Semaphore(f"test-{uuid.uuid4().hex}", lease_s=30)
    yield slots
    keys = list(slots.client.scan_iter(match=slots.redis_key("*")))
    if keys:
        slots.client.delete(*keys)


# --- the semaphore ---------------------------------------------------------------------------


def test_it_admits_up_to_the_limit_and_refuses_beyond(semaphore):
    leases = [semaphore.acquire("t_acme", limit=3) for _ in range(4)]
    assert all(leases[:3]) and leases[3] is None
    assert len({lease.token for lease in leases[:3]}) == 3


def test_it_frees_a_slot_when_a_lease_is_released(semaphore):
    first = semaphore.acquire("t_acme", limit=1)
    assert semaphore.acquire("t_acme", limit=1) is None
    first.release()
    assert semaphore.acquire("t_acme", limit=1) is not None


def test_it_frees_a_slot_when_a_lease_expires(semaphore):
    """A killed worker never releases its lease; the slot comes back when the lease runs out."""
    semaphore.lease_s = 0.05
    assert semaphore.acquire("t_acme", limit=1) is not None
    assert semaphore.acquire("t_acme", limit=1) is None
    time.sleep(0.1)
    assert semaphore.acquire("t_acme", limit=1) is not None


def test_it_keeps_a_held_lease_alive_and_releases_it_at_the_end(semaphore):
    semaphore.lease_s = 0.3
    lease = semaphore.acquire("t_acme", limit=1)
    with lease:
        time.sleep(1.0)  # three lease lengths: only renewal keeps the slot taken
        assert semaphore.acquire("t_acme", limit=1) is None
    assert not lease.renew()  # released on exit
    assert semaphore.acquire("t_acme", limit=1) is not None


def test_it_counts_each_tenant_apart(semaphore):
    assert semaphore.acquire("t_acme", limit=1) is not None
    assert semaphore.acquire("t_acme", limit=1) is None
    assert semaphore.acquire("t_globex", limit=1) is not None
    assert semaphore.redis_key("t_acme").endswith(":t_acme")


def test_it_admits_exactly_the_limit_when_many_race(semaphore):
    barrier = threading.Barrier(50)
    admitted = []

    def contender() -> None:
        barrier.wait()
        lease = semaphore.acquire("t_acme", limit=3)
        if lease is not None:
            admitted.append(lease)

    threads = [threading.Thread(target=contender) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 3


# --- on a real worker ------------------------------------------------------------------------

ACME_BACKLOG = 6


@pytest.fixture
def ingestion_worker(transactional_db, celery_eager, settings):
    """A real worker with two threads, one ingestion slot per tenant: without the cap, acme's
    backlog would take both threads in turn and globex's upload would wait for all of it."""
    ensure_world()  # also puts back the AI catalog an earlier flush removed
    settings.RETRIEVAL_TENANT_CONCURRENCY = 1
    celery_eager.conf.task_always_eager = False
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=10
    ) as worker:
        yield worker


@pytest.fixture
def ingestion_runs():
    """(task id, retries) of every run of the ingestion task, deferred ones included (a task
    put back in the queue keeps its id)."""
    runs: list[tuple[str, int]] = []

    def record(task_id, task, **_) -> None:
        if task.name == document_ingest_task.name:
            runs.append((task_id, task.request.retries))

    task_prerun.connect(record, weak=False)
    yield runs
    task_prerun.disconnect(record)


def _text(label: str, number: int) -> bytes:
    sentences = " ".join(
        f"Section {n} of {label} document {number} describes procedure {number * 100 + n}."
        for n in range(40)
    )
    return f"# {label} document {number}\n\n{sentences}\n".encode()


def _statuses(schema: str) -> dict[int, str]:
    with schema_context(schema):
        return dict(Document.objects.values_list("id", "status"))


def _errors(schema: str) -> dict[int, tuple[str, str]]:
    with schema_context(schema):
        return {d.pk: (d.status, d.error) for d in Document.objects.all()}


@pytest.mark.django_db(transaction=True, databases=["default", "ledger"])
def test_it_ingests_another_tenants_upload_before_a_backlog_finishes(
    ingestion_worker, ingestion_runs
):
    world = ensure_world()
    for number in range(ACME_BACKLOG):
        document_upload(
            tenant=world.acme, user=world.alice, filename=f"acme-{number}.md",
            data=_text("Acme", number),
        )  # fmt: skip
    globex_doc = document_upload(
        tenant=world.globex, user=world.charlie, filename="globex.md", data=_text("Globex", 0)
    )

    acme_ready_when_globex_ready = None
    most_acme_at_once = 0
    deadline = time.monotonic() + 60  # a safety net for a broken build, not a timing goal
    while time.monotonic() < deadline:
        acme = _statuses(world.acme.schema_name)
        globex = _statuses(world.globex.schema_name)
        most_acme_at_once = max(most_acme_at_once, list(acme.values()).count("processing"))
        if acme_ready_when_globex_ready is None and globex[globex_doc.pk] == "ready":
            acme_ready_when_globex_ready = list(acme.values()).count("ready")
        if set(acme.values()) == {"ready"} and acme_ready_when_globex_ready is not None:
            break
        time.sleep(0.05)

    assert acme_ready_when_globex_ready is not None, _errors(world.globex.schema_name)
    assert set(acme.values()) == {"ready"}, _errors(world.acme.schema_name)
    # Globex's single upload did not wait for acme's backlog: most of it was still to do.
    assert acme_ready_when_globex_ready < ACME_BACKLOG // 2
    assert most_acme_at_once <= 1
    # Waiting for a slot put tasks back in the queue without using up their retries.
    runs_per_task = Counter(task_id for task_id, _ in ingestion_runs)
    assert len(runs_per_task) == ACME_BACKLOG + 1 and max(runs_per_task.values()) > 1
    assert {retries for _, retries in ingestion_runs} == {0}
