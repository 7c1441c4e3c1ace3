"""The tenant's AI settings page (BYOK keys) and the gateway's metrics."""

from __future__ import annotations

import pytest
from django.test import Client
from django_tenants.utils import schema_context

from ai.models import ProviderKey
from ai.secrets import secret_decrypt
from saas.audit.models import AuditEvent
from tests.conftest import host_of
from tests.test_gateway import ask

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])
KEY = "sk-acme-secret-key-9876"


def test_it_stores_a_key_encrypted_and_shows_it_masked(
    world, alice_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post("/settings/ai/", {"provider": "openai", "api_key": KEY})
    assert response.status_code == 302
    page = alice_client.get("/settings/ai/").content.decode()
    assert "9876" in page and KEY not in page
    with schema_context("t_acme"):
        stored = ProviderKey.objects.get(provider="openai")
        assert KEY not in stored.encrypted_key and secret_decrypt(stored.encrypted_key) == KEY
        assert AuditEvent.objects.filter(action="provider_key.added", target="openai").exists()
    with schema_context("t_globex"):
        assert not ProviderKey.objects.exists()


def test_it_removes_a_key(world, alice_client):
    alice_client.post("/settings/ai/", {"provider": "anthropic", "api_key": KEY})
    response = alice_client.post("/settings/ai/keys/anthropic/remove/")
    assert response.status_code == 302
    with schema_context("t_acme"):
        assert not ProviderKey.objects.exists()
        assert AuditEvent.objects.filter(action="provider_key.removed").exists()


def test_it_rejects_bad_key_input_with_form_errors(world, alice_client):
    response = alice_client.post("/settings/ai/", {"provider": "openai", "api_key": "short"})
    assert response.status_code == 400 and b"does not look like an API key" in response.content
    response = alice_client.post(
        "/settings/ai/", {"provider": "openai_compatible", "api_key": "abcdefghijk"}
    )
    assert b"needs its base URL" in response.content
    response = alice_client.post("/settings/ai/", {"provider": "local", "api_key": KEY})
    assert response.status_code == 400
    with schema_context("t_acme"):
        assert not ProviderKey.objects.exists()


def test_it_keeps_the_page_to_admins_of_the_tenant(world, bob_client, charlie_on_acme):
    assert bob_client.get("/settings/ai/").status_code == 403
    assert (
        bob_client.post("/settings/ai/", {"provider": "openai", "api_key": KEY}).status_code == 403
    )
    assert charlie_on_acme.get("/settings/ai/").status_code == 404
    assert charlie_on_acme.post("/settings/ai/keys/openai/remove/").status_code == 404
    assert Client(HTTP_HOST=host_of(world.acme)).get("/settings/ai/").status_code == 302
    with schema_context("t_acme"):
        assert not ProviderKey.objects.exists()


def test_it_rotates_encryption_keys(world, alice_client, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from ai.secrets import _fernet

    alice_client.post("/settings/ai/", {"provider": "openai", "api_key": KEY})
    settings.AI_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.AI_ENCRYPTION_KEYS]
    _fernet.cache_clear()
    call_command("rotate_provider_keys")
    settings.AI_ENCRYPTION_KEYS = settings.AI_ENCRYPTION_KEYS[:1]  # the old key is gone
    _fernet.cache_clear()
    try:
        with schema_context("t_acme"):
            assert secret_decrypt(ProviderKey.objects.get().encrypted_key) == KEY
    finally:
        _fernet.cache_clear()


def test_it_exposes_gateway_metrics(world, sim, public_client, settings):
    settings.AI_BREAKER_FAILURES = 1
    sim.script({"fault": "status", "code": 500, "model": "gpt-4o-mini"})
    ask(world.acme)  # opens gpt-4o-mini's breaker, answered by the fallback
    ask(world.globex, model="gpt-4o-mini")  # skips the open breaker
    body = public_client.get("/metrics").content.decode()
    assert 'atrium_ai_calls_total{cache="miss",feature="answer",model="claude-haiku"' in body
    assert "atrium_ai_tokens_total" in body and "atrium_ai_cost_micros_total" in body
    assert 'atrium_ai_breaker_state{model="gpt-4o-mini",provider="openai"} 2.0' in body
    assert "atrium_ai_fallbacks_total" in body
    assert "t_acme" not in body  # no tenant label


def test_it_tells_the_dashboard_when_ai_is_local_only_or_off(world, alice_client):
    from ai.catalog.models import FeatureFlag
    from ai.gateway.config import config_invalidate

    assert b"local extractive" in alice_client.get("/").content
    FeatureFlag.objects.create(feature="*", enabled=False, reason="Maintenance until 14:00.")
    config_invalidate()
    page = alice_client.get("/").content
    assert b"AI features are off: Maintenance until 14:00." in page


def test_it_does_not_say_local_only_when_a_provider_is_configured(world, alice_client, sim):
    assert b"local extractive" not in alice_client.get("/").content


def test_it_says_so_when_a_stored_key_cannot_be_decrypted(world, alice_client, settings, sim):
    from cryptography.fernet import Fernet

    from ai.gateway import GatewayError
    from ai.secrets import _fernet

    alice_client.post("/settings/ai/", {"provider": "openai", "api_key": KEY})
    settings.AI_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key was dropped
    _fernet.cache_clear()
    try:
        with pytest.raises(GatewayError, match="cannot be read"):
            ask(world.acme)
        assert not sim.requests()  # never sent with the platform's key instead
        assert b"cannot be read" in alice_client.get("/").content
    finally:
        _fernet.cache_clear()
