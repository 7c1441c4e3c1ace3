"""Async task bodies on one event loop per worker process.

`async_to_sync` runs each call on a new event loop, and what belongs to a loop goes with it:
the async Redis client's connections and the provider SDKs' HTTP connection pools. Each item
of a bulk job would then open a new connection to the provider (a TLS handshake, in
production) and to Redis. In a Celery worker process, `run_async` runs the coroutine on a
loop that lives as long as the process, in a thread of its own, while the task's thread runs
the coroutine's `sync_to_async` calls, as `async_to_sync` does: they use the database
connection, and the tenant, that Celery set up for the task. Elsewhere (eager tasks in tests,
commands) it is `async_to_sync`.

This leans on asgiref's own mechanism for a loop it runs in another thread
(`AsyncToSync.loop_thread_executors`, the loop's CurrentThreadExecutor); asgiref is pinned, and
the worker tests (tests/test_worker_loop.py) run through it."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.current_thread_executor import CurrentThreadExecutor
from asgiref.sync import AsyncToSync, async_to_sync

_enabled = False
_loops: dict[int, asyncio.AbstractEventLoop] = {}  # per process id: forks start their own
_lock = threading.Lock()


def enable() -> None:
    """Called when a worker starts (saas.celery): its processes, forked ones included, run
    async task bodies on their long-lived loop from then on."""
    global _enabled
    _enabled = True


def run_async[T](
    function: Callable[..., Coroutine[Any, Any, T]], /, *args: Any, **kwargs: Any
) -> T:
    """`function(*args, **kwargs)` to completion, on the process's loop in a worker. An
    exception in this thread (Celery's soft time limit) cancels the coroutine, then is raised
    once the coroutine has handled its cancellation."""
    if not _enabled:
        return async_to_sync(function)(*args, **kwargs)
    loop = _process_loop()
    executor = CurrentThreadExecutor(None)
    AsyncToSync.loop_thread_executors[loop] = executor  # sync_to_async runs here, this thread
    try:
        # The task gets a copy of this thread's context (contextvars: the log's task id).
        future = asyncio.run_coroutine_threadsafe(function(*args, **kwargs), loop)
        try:
            executor.run_until_future(future)
            return future.result()
        except BaseException:
            # Cancelled, the coroutine cleans up (stores what it has); its sync_to_async calls
            # need this thread, so it is served until the coroutine has ended.
            future.cancel()
            executor.run_until_future(future)
            raise
    finally:
        AsyncToSync.loop_thread_executors.pop(loop, None)


def _process_loop() -> asyncio.AbstractEventLoop:
    with _lock:
        loop = _loops.get(os.getpid())
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="task-loop", daemon=True)
            thread.start()
            _loops[os.getpid()] = loop
        return loop
