"""With pooled database connections (DATABASE_POOL_MAX, on by default outside the test suite), a
connection one tenant's request used serves the next tenant's request: each must still see only
its own schema. Checked against the real ASGI server (daphne) with a small pool, alternating
tenants; and a real worker keeps its pooled connection from one task to the next."""

from __future__ import annotations

import time

import httpx2
import pytest
from django.db import connection
from django_tenants.utils import tenant_context

from retrieval.services import document_upload
from saas.audit.models import AuditEvent
from tenants.services.api_keys import api_key_create
from tenants.services.invitations import invitation_create
from tests.conftest import ensure_world
from tests.live import celery_worker, log_tail

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])


@pytest.fixture
def live_env() -> dict[str, str]:
    return {"DATABASE_POOL_MAX": "2"}


def test_pooled_connections_never_carry_a_tenant_over(daphne_live_server):
    world = ensure_world()
    keys = {}
    owners = ((world.acme, world.alice, "acme-only.md"), (world.globex, world.charlie, "g.md"))
    for tenant, owner, name in owners:
        _, raw = api_key_create(tenant=tenant, name="pool", scopes=["documents:read"])
        document_upload(
            tenant=tenant, user=owner, filename=name, data=f"# {name}\n\nText.".encode(),
            enqueue=False,
        )  # fmt: skip
        keys[name] = raw
    client = httpx2.Client(timeout=30)
    for _ in range(10):
        for name, raw in keys.items():
            response = client.get(
                f"http://127.0.0.1:{daphne_live_server.port}/api/v1/documents",
                headers={"Authorization": f"Bearer {raw}", "Host": "localhost"},
            )
            assert response.status_code == 200, response.text
            assert [d["filename"] for d in response.json()["results"]] == [name]
    # The server really pooled: its connections outlive the requests, at most the pool's size
    # (without a pool each request's connection is closed when it ends).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [daphne_live_server.application_name],
        )
        assert 1 <= cursor.fetchone()[0] <= 2


def _worker_connections(application_name: str) -> set[tuple[int, object]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = %s",
            [application_name],
        )
        return set(cursor.fetchall())


def test_a_worker_keeps_its_pooled_connection_from_task_to_task(tmp_path, celery_eager):
    """Celery's Django fixup closes every connection (and the pool) around each task: a new
    PostgreSQL connection per task, ~5 ms of each. The worker (prefork,
    as deployed) now hands its connection back to its pool and the next task takes it."""
    celery_eager.conf.task_always_eager = False
    world = ensure_world()
    log = tmp_path / "worker.log"
    with celery_worker(
        log=log, queues=("interactive",), env={"DATABASE_POOL_MAX": "2"}, pool="prefork"
    ) as worker:
        worker.wait_ready()
        name = worker.hostname.split("@")[0]
        seen = []
        for email in ("pool-1@example.test", "pool-2@example.test"):
            with tenant_context(world.acme):
                invitation_create(
                    tenant=world.acme, acting_user=world.alice, email=email, role="member"
                )
            connection.set_schema_to_public()
            assert _sent(world.acme, email), log_tail(log)
            seen.append(_worker_connections(name))
    assert seen[0] and seen[0] == seen[1]  # open after the first task, the same for the second
    assert len(seen[0]) <= 2


def _sent(tenant, email: str, timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with tenant_context(tenant):
            if AuditEvent.objects.filter(action="invitation.sent", target=email).exists():
                return True
        time.sleep(0.1)
    return False
