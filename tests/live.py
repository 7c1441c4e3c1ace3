"""Live processes for browser tests: the real ASGI app (saas/asgi.py: HTTP and websockets) served
by daphne, and a real Celery worker, each in a process of its own, on the pytest test database.

They are subprocesses, not threads of the test process: Twisted's reactor runs once per process
(so a server thread could never be restarted for the next test), and a fork of the test process
would share its open database and Redis sockets. A subprocess sees nothing of the test's
`settings` fixture either: what it needs comes through its environment, `child_env()`.

    with daphne_server(log=tmp_path / "daphne.log") as server:
        page.goto(server.url("acme.localhost", "/documents/"))

tests/conftest.py wraps this as the `daphne_live_server` fixture (environment additions from
the `live_env` fixture, which a test module may override)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.db import connections
from redis.exceptions import ResponseError

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parent.parent
# Generous: a loaded two-core machine may take several seconds to import Django and the app.
STARTUP_DEADLINE_S = 60
EXIT_DEADLINE_S = 10
# Connections of a process that exited are gone once PostgreSQL notices the closed socket.
DISCONNECT_DEADLINE_S = 10


def database_url(*, application_name: str = "") -> str:
    """DATABASE_URL of the test database pytest-django created (the `default` connection's
    settings name it once the test database is set up; DATABASE_URL itself names the other)."""
    db = connections["default"].settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    url = f"postgres://{credentials}@{host}/{quote(db['NAME'], safe='')}"
    return f"{url}?application_name={quote(application_name)}" if application_name else url


def child_env(*, application_name: str = "", extra: Mapping[str, str] | None = None) -> dict:
    """Environment for a process of the app: the test database (its connections tagged with
    `application_name`), the test's Redis, media folder and keys (so sessions and encrypted
    provider keys made by the test process are valid there), then `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        # Set by browser fixtures for the test process only.
        if key != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "saas.settings",
            "ATRIUM_ENV": "test",
            "DATABASE_URL": database_url(application_name=application_name),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "SECRET_KEY": settings.SECRET_KEY,
            "AI_ENCRYPTION_KEYS": ",".join(settings.AI_ENCRYPTION_KEYS),
            "LOG_FORMAT": "text",
        }
    )
    env.update(extra or {})
    return env


def log_tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Ask the process group to stop (`sig`), kill it if it is still there after the deadline."""
    with suppress(ProcessLookupError):  # exited already
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=EXIT_DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=EXIT_DEADLINE_S)


def _wait_disconnected(application_name: str) -> None:
    """Returns once no database connection tagged `application_name` is left: one left behind
    would keep the test database from being dropped at the end of the run."""
    db = connections["default"].settings_dict
    params = {
        "host": db["HOST"] or "127.0.0.1", "port": db["PORT"] or 5432,
        "user": db["USER"], "password": db["PASSWORD"] or None, "dbname": db["NAME"],
    }  # fmt: skip
    deadline = time.monotonic() + DISCONNECT_DEADLINE_S
    with psycopg.connect(**params, autocommit=True) as conn:
        while True:
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                [application_name],
            ).fetchone()[0]
            if not left:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left} connection(s) of {application_name} still open")
            time.sleep(0.05)


def _start(command: list[str], *, env: dict, log: Path, pass_fds=()) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, pass_fds=pass_fds,
            start_new_session=True,  # a process group of its own: teardown reaches nothing else
        )  # fmt: skip


# --- daphne ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveServer:
    port: int
    log: Path
    application_name: str  # of its database connections (pg_stat_activity)

    def url(self, host: str = "localhost", path: str = "/") -> str:
        """`http://<host>:<port><path>`; tenants answer on `<slug>.localhost` (Chromium sends
        every *.localhost name to the loopback address)."""
        return f"http://{host}:{self.port}{path}"


def _wait_answering(process: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz", headers={"Host": "localhost"}
    )
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"daphne did not answer within {STARTUP_DEADLINE_S} s\n{log_tail(log)}"
            )
        time.sleep(0.05)


@contextmanager
def daphne_server(*, log: Path, env: Mapping[str, str] | None = None) -> Iterator[LiveServer]:
    """daphne serving `saas.asgi:application` on a free loopback port, answering when this
    returns; stopped, with its database connections closed, on exit.

    The listening socket is opened here and handed over (`daphne --fd`), so the port is known
    before the server starts and no other process can take it in between. SITE_PORT is the
    server's port (links to other hosts: login handoff, emails); `env` adds to `child_env()`."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    name = f"atrium-live-daphne-{uuid.uuid4().hex[:12]}"
    command = [
        sys.executable, "-m", "daphne", "--fd", str(listener.fileno()),
        "--application-close-timeout", "2", "saas.asgi:application",
    ]  # fmt: skip
    extra = {"SITE_PORT": str(port), **(env or {})}
    try:
        process = _start(
            command, env=child_env(application_name=name, extra=extra), log=log,
            pass_fds=(listener.fileno(),),
        )  # fmt: skip
    finally:
        listener.close()  # the server holds its own copy
    try:
        _wait_answering(process, port, log)
        yield LiveServer(port=port, log=log, application_name=name)
    finally:
        _stop(process)
        _wait_disconnected(name)


# --- Celery ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveWorker:
    process: subprocess.Popen
    hostname: str
    log: Path

    def wait_ready(self) -> None:
        """Returns once the worker answers a ping (connected to the broker, consuming)."""
        from saas.celery import app

        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while not app.control.ping(destination=[self.hostname], timeout=0.2):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the worker exited with {self.process.returncode}\n{log_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the worker did not answer within {STARTUP_DEADLINE_S} s\n{log_tail(self.log)}"
                )


@contextmanager
def celery_worker(
    *,
    log: Path,
    queues: tuple[str, ...],
    env: Mapping[str, str] | None = None,
    pool: str = "solo",
) -> Iterator[LiveWorker]:
    """A Celery worker consuming `queues` (the solo pool, or `pool="prefork"` with one child
    process, as deployed), started but not waited for: call
    `wait_ready()` once the rest of the setup (a server, a browser) is under way, so both start
    at once. Stopped on exit: a warm shutdown, killed after EXIT_DEADLINE_S.

    Messages already in `queues` are dropped first: left by an earlier run, they would run
    before the test's own (and document ids restart with each fresh tenant schema)."""
    from saas.celery import app

    with app.connection_for_write() as conn:
        for queue in queues:
            conn.default_channel.queue_purge(queue)
    name = f"atrium-live-worker-{uuid.uuid4().hex[:12]}"
    hostname = f"{name}@{socket.gethostname()}"
    command = [
        sys.executable, "-m", "celery", "-A", "saas", "worker", "-Q", ",".join(queues),
        "--pool", pool, "--concurrency", "1", "--hostname", hostname, "--without-gossip",
        "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
    ]  # fmt: skip
    process = _start(command, env=child_env(application_name=name, extra=env), log=log)
    try:
        yield LiveWorker(process=process, hostname=hostname, log=log)
    finally:
        _stop(process)
        _wait_disconnected(name)


# --- answer runners --------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveRunner:
    process: subprocess.Popen
    log: Path

    @property
    def name(self) -> str:  # AnswerRunner's default name
        return f"{socket.gethostname()}-{self.process.pid}"

    def wait_ready(self) -> None:
        """Returns once the runner reads the queue (it shows in the consumer group)."""
        from ai.conversations.runner import GROUP, QUEUE
        from saas.lib.redis import sync_client

        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while True:
            with suppress(ResponseError):  # no group yet
                consumers = sync_client().xinfo_consumers(QUEUE, GROUP)
                if any(c["name"].decode() == self.name for c in consumers):
                    return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the runner exited with {self.process.returncode}\n{log_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the runner did not read within {STARTUP_DEADLINE_S} s\n{log_tail(self.log)}"
                )
            time.sleep(0.05)


@contextmanager
def answer_runner_process(
    *, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[LiveRunner]:
    """`manage.py run_answers` in a process of its own, started but not waited for (call
    `wait_ready()`). Stopped on exit: SIGTERM (it lets running answers finish), killed after
    EXIT_DEADLINE_S."""
    name = f"atrium-live-runner-{uuid.uuid4().hex[:12]}"
    command = [sys.executable, "manage.py", "run_answers"]
    process = _start(command, env=child_env(application_name=name, extra=env), log=log)
    try:
        yield LiveRunner(process=process, log=log)
    finally:
        _stop(process)
        _wait_disconnected(name)


# --- Chromium --------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's headless Chromium under Playwright (`playwright install` cannot download
    browsers here), as a Playwright `Browser`; tests skip when CHROMIUM is None.

    Playwright's sync API runs an event loop in this thread, so Django would refuse the test's
    own (synchronous, safe) ORM calls meanwhile; they are allowed while the browser is open,
    and the connection those calls get (Django keys connections by async context) is closed
    before it closes, or it would keep the test database from being dropped."""
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                yield browser
            finally:
                connections.close_all()
                browser.close()
    finally:
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def watch_problems(page) -> list[str]:
    """Collects what went wrong on a Playwright page: script errors, console errors (CSP
    violations among them) and failed requests; Chromium asks every host for a favicon, which
    the app does not have, so that 404 does not count."""
    found: list[str] = []
    page.on("pageerror", lambda error: found.append(str(error)))
    page.on(
        "console",  # failed requests are counted below, once, with their URL
        lambda message: (
            found.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            found.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )
    return found


# --- the broker ------------------------------------------------------------------------------


def broker_unacked(task_id: str) -> list[str]:
    """Delivery tags of the copies of task `task_id` that a worker took and never acknowledged
    (kombu's Redis transport keeps them, under its documented `unacked_key`, until the
    visibility timeout puts them back in the queue)."""
    import json

    from saas.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        held = channel.client.hgetall(channel.unacked_key)
    return [
        tag.decode()
        for tag, payload in held.items()
        if json.loads(payload)[0]["headers"].get("id") == task_id
    ]


def broker_forget(task_id: str, queue: str) -> None:
    """Leave no copy of the task behind, queued in `queue` or unacknowledged."""
    from saas.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_purge(queue)
        for tag in broker_unacked(task_id):
            channel.client.zrem(channel.unacked_index_key, tag)
            channel.client.hdel(channel.unacked_key, tag)
