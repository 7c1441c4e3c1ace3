"""Signup on the public site provisions a tenant and signs the owner in on its host."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from allauth.account.forms import SignupForm
from allauth.core.exceptions import ImmediateHttpResponse
from django.test import Client
from django_tenants.utils import schema_context, schema_exists

from saas.audit.models import AuditEvent
from tenants.adapters import AccountAdapter
from tenants.models import Membership, Role, Tenant, User

pytestmark = pytest.mark.django_db

SIGNUP = {
    "email": "dana@initech.test",
    "organization_name": "Initech",
    "slug": "initech",
    "password1": "a-Strong-passphrase-42",
}


def follow_handoff(location: str) -> Client:
    """Open the cross-host link in a fresh browser on the target host, as the user would."""
    url = urlsplit(location)
    client = Client(HTTP_HOST=url.hostname)
    response = client.get(url.path)
    assert response.status_code == 302
    assert response["Location"] == "/"
    return client


def test_it_creates_the_tenant_and_signs_the_owner_in_on_its_host(world, public_client):
    response = public_client.post("/accounts/signup/", SIGNUP)

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.hostname == "initech.localhost"
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.name == "Initech"
    assert tenant.plan_code == "free"
    assert tenant.domains.get().domain == "initech.localhost"
    membership = Membership.objects.get(tenant=tenant)
    assert (membership.user.email, membership.role) == ("dana@initech.test", Role.OWNER)
    assert schema_exists("t_initech")

    dashboard = follow_handoff(response["Location"]).get("/")
    assert dashboard.status_code == 200
    assert b"Initech" in dashboard.content
    with schema_context("t_initech"):
        assert AuditEvent.objects.filter(action="tenant.created").count() == 1


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("ab", b"Use 3 to 40 characters."),
        ("x" * 41, b"Use 3 to 40 characters."),
        ("acme two", b"Use lowercase letters"),
        ("acm\u00e9", b"Use lowercase letters"),
        ("-acme", b"Use lowercase letters"),
        ("acme_two", b"Use lowercase letters"),
        ("acme--two", b"Hyphens cannot follow each other."),
        ("www", b"This address is reserved."),
        ("admin", b"This address is reserved."),
        ("billing", b"This address is reserved."),
        ("acme", b"This address is already taken."),
    ],
)
def test_it_refuses_bad_slugs_with_a_form_error(world, public_client, slug, message):
    tenants_before = Tenant.objects.count()
    response = public_client.post("/accounts/signup/", {**SIGNUP, "slug": slug})
    assert response.status_code == 200
    assert message in response.content
    assert Tenant.objects.count() == tenants_before
    assert not Membership.objects.filter(user__email=SIGNUP["email"]).exists()


def test_it_normalises_slug_case_since_hosts_are_case_insensitive(world, public_client):
    response = public_client.post("/accounts/signup/", {**SIGNUP, "slug": "IniTech"})
    assert response.status_code == 302
    assert Tenant.objects.filter(slug="initech").exists()


def test_it_does_not_offer_signup_on_a_tenant_host(world):
    response = Client(HTTP_HOST="acme.localhost").post("/accounts/signup/", SIGNUP)
    assert response.status_code == 200
    assert b"People join Acme Corp by invitation" in response.content
    assert b"http://localhost:8000/accounts/signup/" in response.content
    assert not Tenant.objects.filter(slug="initech").exists()
    assert not Membership.objects.filter(user__email=SIGNUP["email"]).exists()


def test_it_lets_a_signed_in_user_create_another_organisation(world):
    from tests.conftest import client_on

    client = client_on("localhost", world.alice)
    response = client.post("/orgs/", {"organization_name": "Acme Labs", "slug": "acme-labs"})
    assert response.status_code == 302
    assert urlsplit(response["Location"]).hostname == "acme-labs.localhost"
    assert Membership.objects.get(tenant__slug="acme-labs").user == world.alice

    listing = client.get("/orgs/")
    assert b"Acme Corp" in listing.content and b"Acme Labs" in listing.content


def test_it_sends_a_user_with_one_tenant_straight_to_it_after_login(world, public_client):
    response = public_client.post(
        "/accounts/login/",
        {"login": "charlie@globex.test", "password": "correct-horse-battery-staple"},
    )
    assert response.status_code == 302
    assert urlsplit(response["Location"]).hostname == "globex.localhost"
    assert follow_handoff(response["Location"]).get("/").status_code == 200


def test_it_sends_the_loser_of_a_slug_race_back_to_the_form(world, public_client):
    """Two signups validate the same free slug; the second to save must not get a 500."""
    form = SignupForm(data={**SIGNUP, "slug": "raced"})
    assert form.is_valid()  # "raced" is free when this signup validates...
    Tenant.objects.create(slug="raced", name="Winner", schema_name="t_raced_winner")  # ...then not

    request = public_client.get("/accounts/signup/").wsgi_request
    with pytest.raises(ImmediateHttpResponse) as raised:
        AccountAdapter(request).save_user(request, User(), form)
    assert raised.value.response["Location"] == "/accounts/signup/"
    assert not User.objects.filter(email=SIGNUP["email"]).exists()
