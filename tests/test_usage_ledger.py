"""Usage rows written behind the answer: by this process's ledger thread, through its own
connection, retried when the database fails, never lost silently, never written twice."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.db import OperationalError

from ai.gateway import Caller, complete, complete_sync, ledger_writer
from ai.gateway.ledger_writer import usage_flush, usage_write, usage_writer_stop
from ai.gateway.usage import UsageEntry
from billing.models import UsageRecord

# The real path: rows are committed by the ledger thread, outside the test's transaction.
pytestmark = [pytest.mark.django_db(databases=["default", "ledger"]), pytest.mark.separate_ledger]

QUESTION = [{"role": "user", "content": "What is the refund policy for annual plans?"}]


@pytest.fixture(autouse=True)
def _fresh_writer():
    yield
    usage_writer_stop()  # no thread (or patched function) carries over to the next test


def caller(tenant) -> Caller:
    return Caller(tenant, "answer", uuid.uuid4().hex, user_id=1)


def rows(tenant, request_ids: list[str]):
    return UsageRecord.objects.using("ledger").filter(tenant=tenant, request_id__in=request_ids)


def entry(tenant_id: int) -> UsageEntry:
    return UsageEntry(tenant_id, uuid.uuid4().hex, "answer", user_id=None, api_key_id=None)


def slowed(monkeypatch, seconds: float) -> None:
    """The ledger thread takes `seconds` per write, so a caller that did not wait would see
    its row missing."""
    real = ledger_writer.usage_record_many

    def slow(entries):
        time.sleep(seconds)
        real(entries)

    monkeypatch.setattr(ledger_writer, "usage_record_many", slow)


def test_the_answer_does_not_wait_for_its_usage_row_and_flush_writes_it(world, sim, monkeypatch):
    database_answers = threading.Event()
    real = ledger_writer.usage_record_many

    def held_back(entries):
        database_answers.wait(10)
        real(entries)

    monkeypatch.setattr(ledger_writer, "usage_record_many", held_back)
    who = caller(world.acme)
    complete_sync(caller=who, messages=QUESTION, use_cache=False)
    assert not rows(world.acme, [who.request_id]).exists()  # answered, row still on its way
    database_answers.set()
    assert usage_flush(timeout=5)
    assert rows(world.acme, [who.request_id]).get().outcome == "ok"


def test_a_concurrent_burst_is_metered_exactly_once_per_call(world, sim):
    callers = [caller(world.acme) for _ in range(30)]

    async def burst():
        await asyncio.gather(
            *(complete(caller=who, messages=QUESTION, use_cache=False) for who in callers)
        )

    async_to_sync(burst)()
    # The same request ids again (a client retry): still one row each.
    async_to_sync(burst)()
    usage_flush()
    ids = [who.request_id for who in callers]
    assert rows(world.acme, ids).count() == 30


def test_a_database_outage_is_retried_until_the_row_is_stored(world, monkeypatch):
    monkeypatch.setattr(ledger_writer, "BACKOFF_S", (0.01,))
    real = ledger_writer.usage_record_many
    failures = []

    def flaky(entries):
        if len(failures) < 3:
            failures.append(1)
            raise OperationalError("server closed the connection unexpectedly")
        real(entries)

    monkeypatch.setattr(ledger_writer, "usage_record_many", flaky)
    queued = entry(world.acme.pk)
    async_to_sync(usage_write)(queued)
    assert usage_flush(timeout=5)
    assert len(failures) == 3
    assert rows(world.acme, [queued.request_id]).count() == 1


def test_a_row_the_database_refuses_is_logged_whole_and_does_not_block_the_others(world, caplog):
    good, orphan = entry(world.acme.pk), entry(tenant_id=987_654_321)  # no such tenant

    async def both():
        await usage_write(orphan)
        await usage_write(good)

    with caplog.at_level(logging.ERROR, logger="ai.gateway.ledger_writer"):
        async_to_sync(both)()
        assert usage_flush(timeout=5)
    assert rows(world.acme, [good.request_id]).count() == 1
    logged = [r.getMessage() for r in caplog.records if "usage_unwritten" in r.getMessage()]
    assert len(logged) == 1 and orphan.request_id in logged[0]


def test_rows_still_queued_when_the_process_stops_are_logged_for_replay(world, monkeypatch, caplog):
    monkeypatch.setattr(ledger_writer, "BACKOFF_S", (0.01,))

    def down(entries):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(ledger_writer, "usage_record_many", down)
    queued = entry(world.acme.pk)
    with caplog.at_level(logging.ERROR, logger="ai.gateway.ledger_writer"):
        async_to_sync(usage_write)(queued)
        usage_writer_stop()
    assert any(queued.request_id in r.getMessage() for r in caplog.records)
    assert usage_flush(timeout=1)  # nothing left waiting


def test_a_celery_task_ends_only_once_its_usage_rows_are_written(world, monkeypatch):
    from celery.signals import task_postrun

    slowed(monkeypatch, 0.3)
    queued = entry(world.acme.pk)
    async_to_sync(usage_write)(queued)
    task_postrun.send(sender=None, task_id="t1", task=None)
    assert rows(world.acme, [queued.request_id]).count() == 1


def test_an_unexpected_error_in_the_writer_loses_no_waiter_and_the_writer_keeps_going(
    world, monkeypatch, caplog
):
    real = ledger_writer.usage_record_many
    calls = []

    def broken_once(entries):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug, not a database error")
        real(entries)

    monkeypatch.setattr(ledger_writer, "usage_record_many", broken_once)
    first, second = entry(world.acme.pk), entry(world.acme.pk)
    with caplog.at_level(logging.ERROR, logger="ai.gateway.ledger_writer"):
        async_to_sync(usage_write)(first)
        assert usage_flush(timeout=5)  # settled (logged), not hanging
        async_to_sync(usage_write)(second)
        assert usage_flush(timeout=5)
    assert any(first.request_id in r.getMessage() for r in caplog.records)
    assert rows(world.acme, [second.request_id]).count() == 1
