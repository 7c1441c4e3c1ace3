"""How usage rows reach the ledger: behind the answer (default) or before it.

`behind`: the row is queued in memory and a thread of this process writes the queue in batches
(one INSERT per batch, through its own `ledger` connection). The caller does not wait, so a
model call costs no database round trip: under load an awaited write costs a whole turn of the
event loop (about 10 ms at 10 concurrent calls on 2 cores, measured by `make bench`). A failed
write is retried with backoff; rows the database refuses for good are logged whole (event
`usage_unwritten`) so they can be replayed. The queue is drained at the end of every Celery task
(forked workers skip atexit) and when the process exits; only a hard kill within the few
milliseconds between the answer and the write can lose a row.

`inline`: the caller waits until its row is stored (calls finishing together share one INSERT).
No loss window, at the price of that round trip. Tests that run inside a transaction use it.

Either way a row is unique per (tenant, request id): a replay or retry never meters twice."""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connections

from ai.gateway import metrics
from ai.gateway.usage import UsageEntry, usage_record_many

logger = logging.getLogger(__name__)

BACKOFF_S = (0.1, 0.5, 1, 2, 5)
EXIT_FLUSH_S = 10.0
TASK_FLUSH_S = 30.0  # a Celery task waits at most this long for its rows


async def usage_write(entry: UsageEntry) -> None:
    """Meter one call, behind the answer or before it (settings.AI_USAGE_WRITE)."""
    if settings.AI_USAGE_WRITE == "inline":
        await _inline_writer().write(entry)
    else:
        _behind.submit(entry)


def usage_flush(timeout: float | None = None) -> bool:
    """Wait until every row queued so far in this process is written (or logged as
    unwritten). False if `timeout` passed first. Sync; cheap when nothing is queued."""
    return _behind.flush(timeout)


def usage_writer_stop() -> None:
    """Flush, then stop the ledger thread and close its connection (it restarts on the next
    call). For process exit and for test databases about to be dropped."""
    _behind.stop()


# --- behind: one writer thread per process ---------------------------------------------------


class BehindWriter:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.pending: list[UsageEntry] = []
        self.queued = 0  # rows ever queued; rows are written in queue order
        self.settled = 0  # rows written or given up, a prefix of the queue
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.in_flight: list[UsageEntry] = []

    def submit(self, entry: UsageEntry) -> None:
        with self.cond:
            self.pending.append(entry)
            self.queued += 1
            metrics.USAGE_PENDING.inc()
            if self.thread is None:
                self.stopping = False
                self.thread = threading.Thread(target=self._run, name="atrium-ledger", daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        with self.cond:
            target = self.queued
            return self.cond.wait_for(lambda: self.settled >= target, timeout)

    def stop(self, timeout: float = EXIT_FLUSH_S) -> None:
        with self.cond:
            thread = self.thread
            self.stopping = True
            self.cond.notify_all()
        if thread is not None:
            thread.join(timeout)
        with self.cond:
            unwritten, self.pending = self.pending, []
            metrics.USAGE_PENDING.dec(len(unwritten))
            if thread is not None and thread.is_alive():  # still retrying: log its batch too
                unwritten = self.in_flight + unwritten
            self.settled += len(unwritten)
            self.thread = None
            self.cond.notify_all()
        _log_unwritten(unwritten, "the process stopped before the database took them")

    def _run(self) -> None:
        try:
            while True:
                with self.cond:
                    self.cond.wait_for(lambda: self.pending or self.stopping)
                    if not self.pending:
                        return
                    batch, self.pending = self.pending, []
                self.in_flight = batch
                try:
                    _write_with_retries(batch, stopping=lambda: self.stopping)
                except Exception:  # never let the thread die with rows (and waiters) in hand
                    logger.exception("usage ledger writer failed")
                    _log_unwritten(batch, "the ledger writer failed")
                with self.cond:
                    self.in_flight = []
                    self.settled += len(batch)
                    metrics.USAGE_PENDING.dec(len(batch))
                    self.cond.notify_all()
        finally:
            connections.close_all()  # this thread's own connections


def _write_with_retries(batch: list[UsageEntry], stopping: Callable[[], bool]) -> None:
    """Retry a transient failure with backoff for as long as the process runs; when it is
    stopping, give up after a few attempts and log the rows instead."""
    failures = 0
    while True:
        try:
            connections["ledger"].close_if_unusable_or_obsolete()
            usage_record_many(batch)
            return
        except (IntegrityError, DataError):
            # A row the database refuses for good (say its tenant was deleted) must not hold
            # back the others: write them one by one and log the refused ones whole.
            _write_one_by_one(batch)
            return
        except DatabaseError as error:
            failures += 1
            metrics.USAGE_WRITE_ERRORS.inc()
            connections["ledger"].close()
            logger.warning("usage ledger write failed (attempt %d): %s", failures, error)
            if stopping() and failures >= 3:
                _log_unwritten(batch, "the database stayed unreachable")
                return
            time.sleep(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1])


def _write_one_by_one(batch: list[UsageEntry]) -> None:
    for entry in batch:
        try:
            usage_record_many([entry])
        except DatabaseError as error:
            metrics.USAGE_WRITE_ERRORS.inc()
            _log_unwritten([entry], f"the database refused it: {error}")


def _log_unwritten(entries: list[UsageEntry], reason: str) -> None:
    """The last resort: each row whole in the log, to replay (the ledger ignores duplicates)."""
    for entry in entries:
        row = json.dumps(dataclasses.asdict(entry), default=str)
        logger.error("usage_unwritten (%s): %s", reason, row)


_behind = BehindWriter()


def _after_fork_in_child() -> None:
    # The parent's thread and queue stay with the parent (it writes its own rows).
    global _behind
    _behind = BehindWriter()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(usage_writer_stop)


# --- inline: the caller waits; group commit per event loop -----------------------------------


class InlineWriter:
    """Calls finishing together share one INSERT, and each caller still waits until its row is
    written. The first caller writes its own row, then, in one INSERT per round, the rows of
    the calls that queued meanwhile (no extra task to schedule)."""

    def __init__(self) -> None:
        self.pending: list[tuple[UsageEntry, asyncio.Future[None]]] = []
        self.busy = False

    async def write(self, entry: UsageEntry) -> None:
        if self.busy:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.pending.append((entry, future))
            await future
            return
        self.busy = True
        try:
            await sync_to_async(usage_record_many)([entry])
        finally:
            # Written by this caller on behalf of those who queued meanwhile, even if its own
            # write failed: nobody is left waiting.
            try:
                while self.pending:
                    batch, self.pending = self.pending, []
                    await _write_batch(batch)
            finally:
                self.busy = False


async def _write_batch(batch: list[tuple[UsageEntry, asyncio.Future[None]]]) -> None:
    try:
        await sync_to_async(usage_record_many)([entry for entry, _ in batch])
    except Exception as error:  # every waiter learns its write failed
        for _, waiting in batch:
            waiting.set_exception(error)
    else:
        for _, waiting in batch:
            waiting.set_result(None)


_inline_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, InlineWriter]
_inline_writers = weakref.WeakKeyDictionary()


def _inline_writer() -> InlineWriter:
    loop = asyncio.get_running_loop()
    writer = _inline_writers.get(loop)
    if writer is None:
        writer = _inline_writers[loop] = InlineWriter()
    return writer
