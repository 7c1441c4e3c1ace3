"""Invitations, roles and the last-owner rule, through the tenant's pages."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from django_tenants.utils import schema_context

from saas.audit.models import AuditEvent
from tenants.models import Invitation, Membership, Role
from tests.conftest import PASSWORD, client_on, host_of

pytestmark = pytest.mark.django_db


def invite(client: Client, email: str, role: str = "member", **extra):
    return client.post("/invitations/", {"email": email, "role": role}, **extra)


def invitation_link(captured) -> str:
    """The invitation path from the one email sent (the task runs on commit)."""
    assert len(mail.outbox) == 1
    return re.search(r"http://acme\.localhost:8000(/invitations/\S+/)", mail.outbox[0].body)[1]


def test_it_lets_an_admin_invite_a_new_person_who_creates_an_account(
    world, alice_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as captured:
        response = invite(alice_client, "erin@example.test", "admin")
    assert response.status_code == 302
    path = invitation_link(captured)
    assert "erin@example.test" in mail.outbox[0].to

    erin = Client(HTTP_HOST=host_of(world.acme))
    page = erin.get(path)
    assert page.status_code == 200
    assert b"Choose a password" in page.content
    response = erin.post(path, {"password": "Erins-long-password-1", "first_name": "Erin"})
    assert response.status_code == 302
    membership = Membership.objects.get(tenant=world.acme, user__email="erin@example.test")
    assert membership.role == Role.ADMIN
    assert erin.get("/members/").status_code == 200
    # The link is single-use.
    assert Client(HTTP_HOST=host_of(world.acme)).get(path).status_code == 404
    with schema_context(world.acme.schema_name):
        actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"invitation.created", "invitation.sent", "invitation.accepted"} <= actions


def test_it_attaches_an_existing_account_that_signs_in(
    world, alice_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as captured:
        invite(alice_client, "charlie@globex.test")
    path = invitation_link(captured)

    page = Client(HTTP_HOST=host_of(world.acme)).get(path)
    assert b"Sign in to accept" in page.content

    charlie = client_on(host_of(world.acme), world.charlie)
    assert charlie.get("/").status_code == 404  # not a member yet
    response = charlie.post(path)
    assert response.status_code == 302
    assert Membership.objects.get(tenant=world.acme, user=world.charlie).role == Role.MEMBER
    assert charlie.get("/").status_code == 200


def test_it_refuses_an_invitation_for_someone_else(
    world, alice_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as captured:
        invite(alice_client, "someone@example.test")
    path = invitation_link(captured)
    charlie = client_on(host_of(world.acme), world.charlie)
    response = charlie.post(path)
    assert response.status_code == 400
    assert b"sent to someone@example.test" in response.content
    assert not Membership.objects.filter(tenant=world.acme, user=world.charlie).exists()


def test_it_refuses_an_invitation_link_on_another_tenants_host(
    world, alice_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as captured:
        invite(alice_client, "frank@example.test")
    path = invitation_link(captured)
    response = Client(HTTP_HOST=host_of(world.globex)).post(path, {"password": "Franks-password-9"})
    assert response.status_code == 404
    assert not Membership.objects.filter(user__email="frank@example.test").exists()


def test_it_refuses_tampered_revoked_and_expired_links(world, alice_client):
    from django.utils import timezone

    from tenants.services.invitations import invitation_token

    invite(alice_client, "gina@example.test")
    invitation = Invitation.objects.get(email="gina@example.test")
    token = invitation_token(invitation)
    client = Client(HTTP_HOST=host_of(world.acme))
    assert client.get(f"/invitations/{token}x/").status_code == 404

    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now())
    assert b"expired" in client.get(f"/invitations/{token}/").content

    alice_client.post(f"/invitations/{invitation.pk}/revoke/")
    response = client.get(f"/invitations/{token}/")
    assert response.status_code == 404
    assert b"withdrawn" in response.content


def test_it_replaces_an_open_invitation_to_the_same_address(world, alice_client):
    invite(alice_client, "hal@example.test")
    invite(alice_client, "hal@example.test", "admin")
    open_invitations = Invitation.objects.filter(
        tenant=world.acme, email="hal@example.test", revoked_at__isnull=True
    )
    assert [i.role for i in open_invitations] == [Role.ADMIN]


def test_it_refuses_to_invite_an_existing_member(world, alice_client):
    response = invite(alice_client, "bob@acme.test")
    assert response.status_code == 400
    assert b"already a member" in response.content


def test_it_shows_form_errors_for_a_bad_invitation(world, alice_client):
    response = invite(alice_client, "not-an-email", HTTP_HX_REQUEST="true")
    assert response.status_code == 400
    assert b"Enter a valid email address." in response.content
    assert not Invitation.objects.filter(tenant=world.acme).exists()


def test_it_forbids_members_from_admin_actions(world, bob_client):
    alice = Membership.objects.get(tenant=world.acme, user=world.alice)
    assert invite(bob_client, "x@example.test").status_code == 403
    assert bob_client.post(f"/members/{alice.pk}/role/", {"role": "member"}).status_code == 403
    assert bob_client.post(f"/members/{alice.pk}/remove/").status_code == 403
    assert Membership.objects.get(pk=alice.pk).role == Role.OWNER
    assert not Invitation.objects.filter(tenant=world.acme).exists()


def test_it_lets_an_owner_change_roles(world, alice_client):
    bob = Membership.objects.get(tenant=world.acme, user=world.bob)
    response = alice_client.post(
        f"/members/{bob.pk}/role/", {"role": "admin"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert b"bob@acme.test is now Admin." in response.content
    assert Membership.objects.get(pk=bob.pk).role == Role.ADMIN


def test_it_keeps_admins_from_touching_the_owner_role(world, alice_client):
    bob = Membership.objects.get(tenant=world.acme, user=world.bob)
    alice = Membership.objects.get(tenant=world.acme, user=world.alice)
    alice_client.post(f"/members/{bob.pk}/role/", {"role": "admin"})
    bob_client = client_on(host_of(world.acme), world.bob)
    assert bob_client.post(f"/members/{bob.pk}/role/", {"role": "owner"}).status_code == 400
    assert bob_client.post(f"/members/{alice.pk}/role/", {"role": "member"}).status_code == 400
    assert bob_client.post(f"/members/{alice.pk}/remove/").status_code == 400
    assert Membership.objects.get(pk=alice.pk).role == Role.OWNER
    assert Membership.objects.get(pk=bob.pk).role == Role.ADMIN


def test_it_never_lets_the_last_owner_go(world, alice_client):
    alice = Membership.objects.get(tenant=world.acme, user=world.alice)
    response = alice_client.post(f"/members/{alice.pk}/role/", {"role": "admin"})
    assert response.status_code == 400
    response = alice_client.post(f"/members/{alice.pk}/remove/", follow=True)
    assert b"at least one owner" in response.content
    assert Membership.objects.get(pk=alice.pk).role == Role.OWNER


def test_it_lets_an_owner_step_down_once_there_is_another_owner(world, alice_client):
    bob = Membership.objects.get(tenant=world.acme, user=world.bob)
    alice = Membership.objects.get(tenant=world.acme, user=world.alice)
    alice_client.post(f"/members/{bob.pk}/role/", {"role": "owner"})
    response = alice_client.post(f"/members/{alice.pk}/role/", {"role": "member"})
    assert response.status_code == 302
    assert Membership.objects.get(pk=alice.pk).role == Role.MEMBER
    assert Membership.objects.get(pk=bob.pk).role == Role.OWNER


def test_it_lets_an_admin_remove_a_member_and_a_member_leave(world, alice_client, bob_client):
    bob = Membership.objects.get(tenant=world.acme, user=world.bob)
    response = bob_client.post(f"/members/{bob.pk}/remove/")
    assert response.status_code == 302
    assert response["Location"] == "http://localhost:8000/orgs/"
    assert not Membership.objects.filter(pk=bob.pk).exists()
    assert bob_client.get("/").status_code == 404


def test_it_refuses_an_unknown_role(world, alice_client):
    bob = Membership.objects.get(tenant=world.acme, user=world.bob)
    assert alice_client.post(f"/members/{bob.pk}/role/", {"role": "god"}).status_code == 400
    assert Membership.objects.get(pk=bob.pk).role == Role.MEMBER


def test_it_shows_members_to_members_but_invitations_only_to_admins(
    world, bob_client, alice_client
):
    invite(alice_client, "ivy@example.test")
    assert b"ivy@example.test" in alice_client.get("/members/").content
    page = bob_client.get("/members/")
    assert page.status_code == 200
    assert b"alice@acme.test" in page.content
    assert b"ivy@example.test" not in page.content


def test_it_signs_in_on_a_tenant_host_with_a_password(world):
    client = Client(HTTP_HOST=host_of(world.acme))
    response = client.post("/accounts/login/", {"login": "bob@acme.test", "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/").status_code == 200
