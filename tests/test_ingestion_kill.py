"""Ingestion survives a hard kill (issue 4): a real Celery worker, in a process of its own, is
SIGKILLed while it embeds a document. The broker still holds the task (acks late), and running
the ingestion again, which is what the redelivery does, leaves exactly the chunks a clean run
produces, each batch metered once.

The redelivery itself is not waited for (it comes after the broker's visibility timeout, at
least a minute): the test runs the ingestion again in-process instead. The task goes through a
queue of its own, so a copy left behind by a failed run never reaches another test's worker."""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection, connections
from django_tenants.utils import schema_context, tenant_context

from ai.gateway.ledger_writer import usage_flush
from billing.models import UsageRecord
from retrieval.chunking import chunk
from retrieval.extract import extract
from retrieval.models import Chunk, Document
from retrieval.services import EMBED_BATCH, document_ingest, document_upload
from retrieval.tasks import document_ingest_task, ingestion_slots
from saas.lib.semaphore import Lease
from tests.conftest import ensure_world
from tests.live import broker_forget, broker_unacked

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "ingestion-kill-test"
FILENAME = "handbook.md"
KILL_AT_PROGRESS = 35  # embedding under way: progress runs from 30 to 90 over the batches
# Generous: a loaded machine may take long to start the worker; the test normally takes ~12 s.
STARTUP_DEADLINE_S = 90
EXIT_DEADLINE_S = 10


# --- the document ----------------------------------------------------------------------------

SUBJECTS = (
    "The billing team", "Each tenant", "An administrator", "The ledger", "A support engineer",
    "The ingestion worker", "Every invoice", "The audit trail", "A new member", "Retention",
)  # fmt: skip
VERBS = (
    "reviews", "archives", "reconciles", "exports", "approves", "flags", "encrypts",
    "summarises", "escalates", "restores",
)  # fmt: skip
OBJECTS = (
    "overdue invoices", "uploaded contracts", "refund requests", "usage reports",
    "access reviews", "backup snapshots", "vendor agreements", "incident notes",
    "quarterly forecasts", "data export requests",
)  # fmt: skip
WHEN = (
    "every Monday", "before the month closes", "within two business days",
    "after each release", "when a plan changes", "at the end of each quarter",
    "whenever a region fails over", "once a customer signs",
)  # fmt: skip


def _handbook(nonce: str, parts: int = 9, paragraphs: int = 10) -> bytes:
    """About 80 chunks (three embedding batches, a few seconds of work) of varied prose under
    headings; `nonce` makes the file new to the knowledge base (uploads are deduplicated)."""
    rng = random.Random(4)
    lines = [f"# Operations handbook {nonce}", ""]
    for part in range(1, parts + 1):
        lines += [f"## Part {part}: procedures {part * 100} to {part * 100 + paragraphs - 1}", ""]
        for number in range(paragraphs):
            sentences = [
                f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
                f"{rng.choice(WHEN)} (procedure {part * 100 + number}, step {step})."
                for step in range(1, rng.randint(4, 9))
            ]
            lines += [" ".join(sentences), ""]
    return "\n".join(lines).encode()


# --- the worker ------------------------------------------------------------------------------


def _test_database_url() -> str:
    db = connections["default"].settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{quote(db['NAME'], safe='')}"


def _worker_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "saas.settings",
        "ATRIUM_ENV": "test",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),  # where this test's upload was stored
        # A slot left taken by another test must not defer the task: the cap is not under test.
        "RETRIEVAL_TENANT_CONCURRENCY": "1000",
    }


def _start_worker(log: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "celery", "-A", "saas", "worker", "-Q", QUEUE,
        "--pool", "solo", "--concurrency", "1", "--hostname", f"kill-{uuid.uuid4().hex[:8]}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=_worker_env(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill reaches nothing else
        )  # fmt: skip


def _kill(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=EXIT_DEADLINE_S)


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


# --- the broker ------------------------------------------------------------------------------


def _release_leases_of(pid: int, schema: str) -> None:
    """A killed worker never releases its ingestion slot (it would expire after
    RETRIEVAL_TENANT_LEASE_S); free it so later tests find the tenant's slots all free."""
    slots = ingestion_slots()
    prefix = f"{socket.gethostname()}:{pid}:"
    for token in slots.client.zrange(slots.redis_key(schema), 0, -1):
        if token.decode().startswith(prefix):
            Lease(slots, schema, token.decode()).release()


# --- the database ----------------------------------------------------------------------------


def _document(schema: str, document_id: int) -> Document:
    with schema_context(schema):
        return Document.objects.get(pk=document_id)


def _chunks(schema: str, document_id: int) -> list[tuple[int, str]]:
    with schema_context(schema):
        return list(
            Chunk.objects.filter(document_id=document_id)
            .order_by("index")
            .values_list("index", "text")
        )


def _metered(tenant, document: Document) -> list[str]:
    assert usage_flush(timeout=10), "the ledger thread did not write its rows within 10 s"
    return list(
        UsageRecord.objects.using("ledger")
        .filter(tenant=tenant, request_id__startswith=f"ingest:{document.public_id}")
        .values_list("request_id", flat=True)
    )


def _wait_for(condition: Callable[[], bool], *, timeout: float, failure: Callable[[], str]):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(failure())
        time.sleep(0.02)


# --- the test --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "ledger"])
def test_it_leaves_exactly_the_expected_chunks_when_a_worker_is_killed_mid_document(
    celery_eager, tmp_path
):
    world = ensure_world()
    schema = world.acme.schema_name
    data = _handbook(uuid.uuid4().hex)
    expected = [
        piece.text
        for piece in chunk(
            extract(data, FILENAME),
            max_tokens=settings.RETRIEVAL_CHUNK_TOKENS,
            overlap=settings.RETRIEVAL_CHUNK_OVERLAP,
        )
    ]
    # Several batches, so the worker dies with part of the document embedded and part not.
    assert len(expected) > 2 * EMBED_BATCH, len(expected)

    document = document_upload(
        tenant=world.acme, user=world.alice, filename=FILENAME, data=data, enqueue=False
    )
    celery_eager.conf.task_always_eager = False
    with tenant_context(world.acme):  # the schema travels in the message, as from a request
        task_id = document_ingest_task.apply_async(
            kwargs={"document_id": document.pk}, queue=QUEUE
        ).id
    connection.set_schema_to_public()

    log = tmp_path / "worker.log"
    worker = _start_worker(log)
    try:

        def embedding_under_way() -> bool:
            current = _document(schema, document.pk)
            if current.status in (Document.Status.READY, Document.Status.FAILED):
                pytest.fail(
                    f"the ingestion ended ({current.status}: {current.error!r}) before the "
                    f"worker could be killed mid-document; make the document bigger\n{_tail(log)}"
                )
            if worker.poll() is not None:
                pytest.fail(f"the worker exited with {worker.returncode}\n{_tail(log)}")
            return (
                current.status == Document.Status.PROCESSING
                and current.progress >= KILL_AT_PROGRESS
            )

        _wait_for(
            embedding_under_way,
            timeout=STARTUP_DEADLINE_S,
            failure=lambda: (
                f"the worker did not get to embedding within {STARTUP_DEADLINE_S} s "
                f"(document {_document(schema, document.pk).status}, progress "
                f"{_document(schema, document.pk).progress})\n{_tail(log)}"
            ),
        )
        _kill(worker)
        assert worker.returncode == -signal.SIGKILL, _tail(log)

        # Killed mid-document: still "processing", and no partial or stray chunks.
        killed = _document(schema, document.pk)
        assert killed.status == Document.Status.PROCESSING
        assert KILL_AT_PROGRESS <= killed.progress < 100
        assert killed.chunk_count == 0
        left = _chunks(schema, document.pk)
        assert len({index for index, _ in left}) == len(left)
        assert all(index < len(expected) and expected[index] == text for index, text in left), (
            f"chunks that a clean ingestion does not produce: {[i for i, _ in left]}"
        )
        # The broker still holds the task the worker died with, so it will run again.
        assert broker_unacked(task_id), (
            "the broker no longer holds the task the worker was killed in: it would never be "
            "redelivered (CELERY_TASK_ACKS_LATE off?)"
        )
        metered_before = _metered(world.acme, document)
    finally:
        _kill(worker)
        broker_forget(task_id, QUEUE)
        _release_leases_of(worker.pid, schema)

    # What the redelivered task does.
    document_ingest(tenant=world.acme, document_id=document.pk)

    done = _document(schema, document.pk)
    assert (done.status, done.error, done.progress) == (Document.Status.READY, "", 100)
    chunks = _chunks(schema, document.pk)
    assert done.chunk_count == len(chunks) == len(expected)
    assert [index for index, _ in chunks] == list(range(len(expected)))
    assert [text for _, text in chunks] == expected
    # One row per batch: the killed run's batches and their second embedding share request
    # ids (a unique key), so what was embedded twice is metered once.
    metered = _metered(world.acme, document)
    assert len(metered) == len(set(metered)), sorted(metered)
    assert set(metered_before) <= set(metered)
    batches = math.ceil(len(set(expected)) / EMBED_BATCH)
    assert len(metered) == batches, f"{len(metered)} usage rows for {batches} batches"
