"""Tenant isolation: pages, sessions, cache keys and tasks never cross tenants."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from django_tenants.utils import schema_context, tenant_context

from saas.audit.models import AuditEvent
from tenants.models import Invitation, Membership, Role
from tests.conftest import client_on, host_of

pytestmark = pytest.mark.django_db


def acme_pages(world) -> list[tuple[str, str, dict]]:
    bob = Membership.objects.get(tenant=world.acme, user=world.bob)
    invitation = Invitation.objects.create(
        tenant=world.acme, email="target@example.test", role=Role.MEMBER,
        expires_at="2099-01-01T00:00:00Z", invited_by=world.alice,
    )  # fmt: skip
    return [
        ("get", "/", {}),
        ("get", "/members/", {}),
        ("post", f"/members/{bob.pk}/role/", {"role": "admin"}),
        ("post", f"/members/{bob.pk}/remove/", {}),
        ("post", "/invitations/", {"email": "spy@globex.test", "role": "owner"}),
        ("post", f"/invitations/{invitation.pk}/revoke/", {}),
        ("post", "/switch/acme/", {}),
    ]


def test_it_answers_404_to_a_non_member_on_every_acme_page(world, charlie_on_acme):
    for method, path, data in acme_pages(world):
        response = getattr(charlie_on_acme, method)(path, data)
        assert response.status_code == 404, (method, path)
    assert Membership.objects.get(tenant=world.acme, user=world.bob).role == Role.MEMBER
    assert Invitation.objects.filter(tenant=world.acme, revoked_at__isnull=True).count() == 1
    assert not Invitation.objects.filter(email="spy@globex.test").exists()


def test_it_answers_404_for_acme_ids_on_globex_host(world):
    charlie = client_on(host_of(world.globex), world.charlie)
    bob = Membership.objects.get(tenant=world.acme, user=world.bob)
    assert charlie.post(f"/members/{bob.pk}/role/", {"role": "owner"}).status_code == 404
    assert charlie.post(f"/members/{bob.pk}/remove/").status_code == 404
    assert Membership.objects.get(pk=bob.pk).role == Role.MEMBER


def test_it_does_not_switch_to_a_tenant_the_user_is_not_in(world):
    charlie = client_on(host_of(world.globex), world.charlie)
    assert charlie.post("/switch/acme/").status_code == 404


def test_it_does_not_accept_an_acme_session_cookie_on_globex(world, alice_client):
    Membership.objects.create(user=world.alice, tenant=world.globex, role=Role.MEMBER)
    assert alice_client.get("/").status_code == 200
    replay = Client(HTTP_HOST=host_of(world.globex))
    replay.cookies = alice_client.cookies  # the cookie copied by hand to the other host
    response = replay.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_switches_tenants_through_a_single_use_link(world, alice_client):
    Membership.objects.create(user=world.alice, tenant=world.globex, role=Role.MEMBER)
    assert b"Switch organisation" in alice_client.get("/").content
    response = alice_client.post("/switch/globex/")
    assert response.status_code == 302
    link = response["Location"]
    assert link.startswith("http://globex.localhost:8000/auth/handoff/")
    path = link.removeprefix("http://globex.localhost:8000")

    browser = Client(HTTP_HOST=host_of(world.globex))
    assert browser.get(path)["Location"] == "/"
    assert browser.get("/").status_code == 200
    replay = Client(HTTP_HOST=host_of(world.globex))
    assert replay.get(path)["Location"].startswith("/accounts/login/")
    # The same link on a third tenant's host does nothing.
    assert Client(HTTP_HOST=host_of(world.acme)).get(path)["Location"].startswith("/accounts/")


def test_it_keeps_cache_entries_apart_per_tenant(world):
    with tenant_context(world.acme):
        cache.set("plan-usage", "acme-secret")
        assert cache.get("plan-usage") == "acme-secret"
    with tenant_context(world.globex):
        assert cache.get("plan-usage") is None
        cache.set("plan-usage", "globex-value")
    with tenant_context(world.acme):
        assert cache.get("plan-usage") == "acme-secret"
    assert cache.get("plan-usage") is None  # public schema


def test_it_keeps_the_audit_log_in_each_tenants_schema(world, alice_client):
    alice_client.post("/invitations/", {"email": "kim@example.test", "role": "member"})
    with schema_context(world.acme.schema_name):
        assert AuditEvent.objects.filter(target="kim@example.test").exists()
    with schema_context(world.globex.schema_name):
        assert not AuditEvent.objects.filter(target="kim@example.test").exists()


def test_it_shows_a_suspended_tenant_to_its_members_as_suspended(world, alice_client):
    from tenants.models import Tenant

    Tenant.objects.filter(pk=world.acme.pk).update(status=Tenant.Status.SUSPENDED)
    response = alice_client.get("/members/")
    assert response.status_code == 403
    assert b"This organisation is suspended" in response.content
    assert client_on(host_of(world.acme), world.charlie).get("/").status_code == 404
