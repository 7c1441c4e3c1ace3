"""Host routing, probes and the UI shell."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

from saas.logging import RequestContextFilter
from tests.conftest import host_of

pytestmark = pytest.mark.django_db


def test_it_serves_the_landing_page_on_the_base_domain(public_client):
    response = public_client.get("/")
    assert response.status_code == 200
    assert b"Create your organisation" in response.content


def test_it_answers_unknown_hosts_with_a_friendly_404():
    response = Client(HTTP_HOST="nobody-here.localhost").get("/")
    assert response.status_code == 404
    assert b"There is no organisation here" in response.content


def test_it_answers_hosts_outside_the_base_domain_with_a_friendly_404():
    response = Client(HTTP_HOST="evil.example.com").get("/")
    assert response.status_code == 404
    assert b"There is no organisation here" in response.content


def test_it_never_serves_the_template_schema_as_a_tenant():
    response = Client(HTTP_HOST="tenant-template.localhost").get("/")
    assert response.status_code == 404


def test_it_sends_anonymous_visitors_of_a_tenant_to_its_login(world):
    response = Client(HTTP_HOST=host_of(world.acme)).get("/members/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/members/")


def test_it_ignores_a_spoofed_forwarded_host(world, alice_client):
    response = Client(HTTP_HOST=host_of(world.globex), HTTP_X_FORWARDED_HOST="acme.localhost").get(
        "/"
    )
    assert response.status_code == 302  # globex's login page, not acme's dashboard
    response = alice_client.get("/", HTTP_X_FORWARDED_HOST=host_of(world.globex))
    assert b"Acme Corp" in response.content


def test_it_reports_health_on_any_host():
    for host in ("localhost", "unknown.localhost", "10.0.0.7"):
        response = Client(HTTP_HOST=host).get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


def test_it_reports_readiness_of_database_redis_and_migrations(world):
    response = Client(HTTP_HOST="localhost").get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "migrations": "ok"}


def test_it_exposes_prometheus_metrics(public_client):
    public_client.get("/")
    response = public_client.get("/metrics")
    assert response.status_code == 200
    assert b'atrium_http_requests_total{method="GET",route="/",status="200"}' in response.content


def test_it_sends_security_headers(public_client):
    response = public_client.get("/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert len(response["X-Request-ID"]) >= 8


def test_it_logs_with_request_id_and_tenant(world, alice_client, caplog):
    caplog.handler.addFilter(RequestContextFilter())
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = alice_client.get("/no-such-page/", HTTP_X_REQUEST_ID="req-abc-12345")
    assert response.status_code == 404
    assert response["X-Request-ID"] == "req-abc-12345"
    record = next(r for r in caplog.records if r.name == "django.request")
    assert record.request_id == "req-abc-12345"
    assert record.tenant == "t_acme"


def test_it_serves_static_files_without_collectstatic(public_client):
    response = public_client.get("/static/css/app.css")
    assert response.status_code == 200
