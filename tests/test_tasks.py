"""A task queued by a tenant runs in that tenant's schema, on a real worker over the broker."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core import mail
from django.db import connection
from django_tenants.utils import schema_context, tenant_context

from saas.audit.models import AuditEvent
from saas.celery import app
from tenants.services.invitations import invitation_create
from tests.conftest import ensure_world


@pytest.fixture
def real_worker(transactional_db, celery_eager):
    celery_eager.conf.task_always_eager = False
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker


def _wait_for_events(schema: str, target: str, count: int = 1, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with schema_context(schema):
            sent = AuditEvent.objects.filter(action="invitation.sent", target=target).count()
        if sent >= count:
            return True
        time.sleep(0.1)
    return False


def test_it_runs_a_task_queued_by_acme_in_acme_only(real_worker):
    world = ensure_world()
    with tenant_context(world.acme):  # as a request on acme's host does
        invitation_create(
            tenant=world.acme, acting_user=world.alice, email="lee@example.test", role="member"
        )
    connection.set_schema_to_public()

    assert _wait_for_events(world.acme.schema_name, "lee@example.test")
    with schema_context(world.globex.schema_name):
        assert not AuditEvent.objects.filter(target="lee@example.test").exists()
    assert [m.to for m in mail.outbox] == [["lee@example.test"]]


def test_it_does_nothing_when_a_task_runs_under_another_tenant(real_worker):
    """The task only sees its own tenant's rows: queued from globex, acme's invitation is safe."""
    from tenants.tasks import invitation_send

    world = ensure_world()
    with tenant_context(world.acme):
        invitation = invitation_create(
            tenant=world.acme, acting_user=world.alice, email="mo@example.test", role="member"
        )
    assert _wait_for_events(world.acme.schema_name, "mo@example.test", count=1)

    with tenant_context(world.globex):
        invitation_send.delay(invitation_id=invitation.pk)
    with tenant_context(world.acme):  # a marker behind it in the same (FIFO, solo) worker
        invitation_send.delay(invitation_id=invitation.pk)
    assert _wait_for_events(world.acme.schema_name, "mo@example.test", count=2)

    assert len(mail.outbox) == 2  # the on-commit send and the marker; globex's found nothing
    with schema_context(world.globex.schema_name):
        assert not AuditEvent.objects.filter(target="mo@example.test").exists()
