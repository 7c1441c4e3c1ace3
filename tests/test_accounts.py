"""Accounts: login throttling, MFA, password reset, the organisation chooser."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client

from tenants.models import Membership, Role
from tests.conftest import PASSWORD, client_on, host_of

pytestmark = pytest.mark.django_db


def test_it_throttles_repeated_failed_logins(world, public_client):
    def attempt(password: str) -> bytes:
        data = {"login": "alice@acme.test", "password": password}
        response = public_client.post("/accounts/login/", data)
        assert response.status_code == 200  # the form again, with an error
        return response.content

    for i in range(5):
        assert b"Too many failed login attempts" not in attempt(f"wrong-{i}")
    assert b"Too many failed login attempts" in attempt("wrong-again")
    # Even the right password is refused while throttled, and no session is created.
    assert b"Too many failed login attempts" in attempt(PASSWORD)
    assert "_auth_user_id" not in public_client.session


def totp_code(secret: str) -> str:
    from allauth.mfa.totp.internal.auth import (
        format_hotp_value,
        hotp_value,
        yield_hotp_counters_from_time,
    )

    counter = next(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counter))


def test_it_lets_a_user_turn_on_totp_and_then_asks_for_it_at_login(world):
    from allauth.mfa.models import Authenticator

    client = Client(HTTP_HOST=host_of(world.acme))
    client.post("/accounts/login/", {"login": "bob@acme.test", "password": PASSWORD})
    # Turning on MFA is a sensitive change: allauth asks for the password again first.
    assert client.get("/accounts/2fa/totp/activate/")["Location"].startswith(
        "/accounts/reauthenticate/"
    )
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = page.context["form"].secret
    response = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    assert Authenticator.objects.filter(user=world.bob, type=Authenticator.Type.TOTP).exists()

    client.post("/accounts/logout/")
    response = client.post("/accounts/login/", {"login": "bob@acme.test", "password": PASSWORD})
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/").status_code == 302  # not signed in until the code is given


def test_it_sends_a_password_reset_email(world, public_client):
    response = public_client.post("/accounts/password/reset/", {"email": "bob@acme.test"})
    assert response.status_code == 302
    assert mail.outbox[-1].to == ["bob@acme.test"]
    assert "/accounts/password/reset/key/" in mail.outbox[-1].body


def test_it_lists_my_organisations_after_login_when_i_have_several(world, public_client):
    Membership.objects.create(user=world.charlie, tenant=world.acme, role=Role.MEMBER)
    response = public_client.post(
        "/accounts/login/", {"login": "charlie@globex.test", "password": PASSWORD}
    )
    assert response["Location"] == "/orgs/"
    page = public_client.get("/orgs/")
    assert b"Acme Corp" in page.content and b"Globex" in page.content
    opened = public_client.post("/orgs/acme/open/")
    assert opened["Location"].startswith("http://acme.localhost:8000/auth/handoff/")


def test_it_refuses_to_open_an_organisation_i_am_not_in(world):
    client = client_on("localhost", world.charlie)
    assert client.post("/orgs/acme/open/").status_code == 404


def test_it_shows_an_empty_state_without_organisations(world):
    client = client_on("localhost", world.alice)
    Membership.objects.filter(user=world.alice).delete()
    assert b"You do not belong to any organisation yet" in client.get("/orgs/").content


def test_it_signs_out(world, alice_client):
    response = alice_client.post("/accounts/logout/")
    assert response.status_code == 302
    assert alice_client.get("/").status_code == 302
    assert Client(HTTP_HOST=host_of(world.acme)).get("/").status_code == 302
