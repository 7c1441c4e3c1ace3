"""Shared fixtures: the personas (acme: alice owner, bob member; globex: charlie owner) and
clients signed in on a tenant's host. Tests run against the real PostgreSQL and Valkey that
`make test` starts (scripts/services.py, profile `test`)."""

from __future__ import annotations

import asyncio
import importlib
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_exists

from tenants.middleware import SESSION_TENANT_KEY
from tenants.models import Domain, Membership, Role, Tenant, User
from tenants.services.accounts import user_ensure
from tenants.services.provisioning import tenant_provision

PASSWORD = "correct-horse-battery-staple"


@dataclass
class World:
    acme: Tenant
    globex: Tenant
    alice: User
    bob: User
    charlie: User


def _ensure_system_rows() -> None:
    # A transactional test's flush empties the public tables; put the system rows back: the
    # system tenants and the AI catalog (both seeded by migrations in a real deployment).
    from ai.catalog.models import AIModel
    from ai.gateway.config import config_invalidate

    if not AIModel.objects.exists():
        seed = importlib.import_module("ai.catalog.migrations.0002_seed_catalog").seed
        seed(django_apps, None)
        config_invalidate()
    Tenant.objects.get_or_create(
        schema_name=settings.PUBLIC_SCHEMA_NAME,
        defaults={"slug": "public", "name": "Public", "status": Tenant.Status.SYSTEM},
    )
    Tenant.objects.get_or_create(
        schema_name=settings.TENANT_BASE_SCHEMA,
        defaults={"slug": "tenant-template", "name": "Template", "status": Tenant.Status.SYSTEM},
    )


def _ensure_tenant(slug: str, name: str, owner: User) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is not None:
        return tenant
    schema = f"t_{slug}"
    if schema_exists(schema):  # orphaned by a flush: start clean
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return tenant_provision(slug=slug, name=name, owner=owner)


def ensure_world() -> World:
    connection.set_schema_to_public()
    _ensure_system_rows()
    alice = user_ensure(email="alice@acme.test", password=PASSWORD)
    bob = user_ensure(email="bob@acme.test", password=PASSWORD)
    charlie = user_ensure(email="charlie@globex.test", password=PASSWORD)
    acme = _ensure_tenant("acme", "Acme Corp", alice)
    globex = _ensure_tenant("globex", "Globex", charlie)
    Membership.objects.get_or_create(user=bob, tenant=acme, defaults={"role": Role.MEMBER})
    return World(acme=acme, globex=globex, alice=alice, bob=bob, charlie=charlie)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from django.db import connections

    from ai.gateway.ledger_writer import usage_writer_stop

    # Django points the `ledger` mirror at the test database only on this thread's connection
    # object; the ledger thread opens its own from the shared settings, so point those too.
    connections.settings["ledger"] = connections["ledger"].settings_dict
    with django_db_blocker.unblock():
        ensure_world()
    yield
    # Ledger connections are persistent: close them before the test database is dropped.
    usage_writer_stop()
    connections.close_all()


@pytest.fixture
def world(db) -> World:
    return ensure_world()


@pytest.fixture(autouse=True)
def celery_eager():
    """Tasks run in-process, in the enqueuing tenant's schema; tests/test_tasks.py uses a real
    worker instead to prove the schema travels with the message."""
    from saas.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield app
    app.conf.task_always_eager = False


@dataclass
class ThreadRunner:
    """An answer runner on an event loop of its own in a thread of this process."""

    runner: Any
    loop: asyncio.AbstractEventLoop
    stopping: asyncio.Event
    thread: threading.Thread

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the answer runner did not stop"


def start_answer_runner(**options: Any) -> ThreadRunner:
    """Start an AnswerRunner (ai.conversations.runner) in a thread; returns once it reads.
    Needs a transactional test: it works through connections of its own."""
    from ai.conversations.runner import AnswerRunner

    runner = AnswerRunner(**options)
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()
    ready = threading.Event()

    async def serve() -> None:
        loop.call_soon(ready.set)
        await runner.serve(stopping)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the answer runner did not start"
    return ThreadRunner(runner, loop, stopping, thread)


@pytest.fixture
def answer_runner():
    """A running answer runner: chat sends are answered as deployed."""
    started = start_answer_runner()
    yield started.runner
    started.stop()


@pytest.fixture(autouse=True)
def _public_schema_and_clean_cache():
    """Each test starts on the public schema with an empty cache (rate limits, handoff nonces,
    breakers, answer cache) and reloads the AI catalog it sees."""
    from ai.gateway.breaker import _seen_closed
    from ai.gateway.config import config_invalidate

    connection.set_schema_to_public()
    cache.clear()
    _seen_closed.clear()
    config_invalidate()
    yield
    connection.set_schema_to_public()


@pytest.fixture(autouse=True)
def _ledger_in_test_transaction(request, settings):
    """Usage rows are normally written behind the answer by the ledger thread, through its own
    `ledger` connection. That connection would not see tenants created inside the test's
    transaction, so such tests write inline through the test's own connection; tests marked
    `separate_ledger` (and transactional ones) keep the real path: read after `usage_flush()`."""
    from django.db import connections

    transactional = "transactional_db" in request.fixturenames or any(
        marker.kwargs.get("transaction") for marker in request.node.iter_markers("django_db")
    )
    if transactional or request.node.get_closest_marker("separate_ledger"):
        yield  # committed data: the ledger's own connection sees it
        return
    settings.AI_USAGE_WRITE = "inline"
    original = connections["ledger"]
    connections["ledger"] = connections["default"]
    yield
    connections["ledger"] = original


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path_factory):
    """Uploaded files go to a throwaway folder, never into the checkout."""
    settings.MEDIA_ROOT = tmp_path_factory.getbasetemp() / "media"


@pytest.fixture(scope="session")
def simulator():
    from ai.simulator import Simulator

    with Simulator(port=0) as sim:
        yield sim


@pytest.fixture
def sim(simulator, settings):
    """The provider simulator as the platform's OpenAI and Anthropic, with fast retries."""
    simulator.reset()
    settings.OPENAI_API_KEY = "sk-platform-openai-000000"
    settings.OPENAI_BASE_URL = simulator.openai_base_url
    settings.ANTHROPIC_API_KEY = "sk-ant-platform-0000000"
    settings.ANTHROPIC_BASE_URL = simulator.anthropic_base_url
    settings.AI_BACKOFF_BASE_MS = 1
    settings.AI_BACKOFF_MAX_MS = 5
    yield simulator
    simulator.reset()


def host_of(tenant: Tenant) -> str:
    return Domain.objects.get(tenant=tenant, is_primary=True).domain


def client_on(host: str, user: User | None = None) -> Client:
    """A test client on `host`, signed in as `user` with the session bound to that host's tenant
    (what a real login on that host does)."""
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
        session = client.session
        if host == settings.BASE_DOMAIN:
            session[SESSION_TENANT_KEY] = settings.PUBLIC_SCHEMA_NAME
        else:
            session[SESSION_TENANT_KEY] = Domain.objects.get(domain=host).tenant.schema_name
        session.save()
    return client


@pytest.fixture
def public_client() -> Client:
    return Client(HTTP_HOST=settings.BASE_DOMAIN)


@pytest.fixture
def alice_client(world: World) -> Client:
    return client_on(host_of(world.acme), world.alice)


@pytest.fixture
def bob_client(world: World) -> Client:
    return client_on(host_of(world.acme), world.bob)


@pytest.fixture
def charlie_on_acme(world: World) -> Client:
    return client_on(host_of(world.acme), world.charlie)


@pytest.fixture
def live_env() -> dict[str, str]:
    """Environment additions for the live processes (`daphne_live_server`, tests/live.py); a
    test module overrides this fixture to point them at the simulator, say."""
    return {}


@pytest.fixture
def page():
    """A page in Debian's headless Chromium (tests/live.chromium), 10 s default timeout."""
    from tests.live import chromium

    with chromium() as browser:
        context = browser.new_context()
        context.set_default_timeout(10_000)
        yield context.new_page()


@pytest.fixture
def daphne_live_server(transactional_db, live_env, tmp_path, settings):
    """The real ASGI app (HTTP and websockets) served by daphne in a process of its own, on
    the test database: `page.goto(daphne_live_server.url("acme.localhost", "/documents/"))`.
    Its log is `daphne_live_server.log`. Data the test writes must be committed to be seen
    (hence a transactional test), and the test's `settings` do not reach it (`live_env` does)."""
    from tests.live import daphne_server

    with daphne_server(log=tmp_path / "daphne.log", env=live_env) as server:
        settings.SITE_PORT = server.port  # links the test itself builds to other hosts
        yield server
