"""The cross-tenant matrix: every API operation that names an object, read from the served
OpenAPI schema (so a new endpoint is covered the day it is added), called with globex's key
on acme's object ids: 404 on the base domain, 401 on acme's host, and acme's objects are
exactly as they were."""

from __future__ import annotations

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_tenants.utils import schema_context

from ai.models import Conversation, Job, JobItem, Message
from retrieval.models import Chunk, Document
from saas.webhooks.models import WebhookEndpoint
from tenants.models import APIKey
from tests.conftest import host_of
from tests.test_api import api, key_for

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])

METHODS = ("get", "post", "put", "patch", "delete")
BODIES = {  # a valid body where the operation takes one, so only the tenant check can refuse
    "/api/v1/conversations/{conversation_id}/messages": {"content": "Tell me acme's secrets"},
}


def acme_state() -> tuple:
    """Everything the calls could change, compared before and after."""
    with schema_context("t_acme"):
        return (
            list(Document.objects.values_list("public_id", "title", "status", "tags")),
            Chunk.objects.count(),
            list(Conversation.objects.values_list("public_id", "title")),
            list(Message.objects.values_list("public_id", "status", "content")),
            list(WebhookEndpoint.objects.values_list("public_id", "url", "is_active", "events")),
            list(Job.objects.values_list("public_id", "status", "cancelled_items")),
            list(JobItem.objects.values_list("pk", "status", "output")),
        )


def test_globex_reaches_no_acme_object_through_any_operation(
    world, settings, sim, django_capture_on_commit_callbacks
):
    acme = api(settings.BASE_DOMAIN, key_for(world.acme))
    with django_capture_on_commit_callbacks(execute=True):
        document = acme.post(
            "/api/v1/documents",
            {"file": SimpleUploadedFile("r.md", b"# Refunds\n\nWithin 30 days.\n")},
        ).json()
        conversation = acme.post(
            "/api/v1/conversations", {"title": "Acme only"}, content_type="application/json"
        ).json()
        acme.post(
            f"/api/v1/conversations/{conversation['id']}/messages",
            {"content": "Hello"},
            content_type="application/json",
        )
        webhook = acme.post(
            "/api/v1/webhooks",
            {"url": "https://hooks.example.com/acme"},
            content_type="application/json",
        ).json()
        job = acme.post(
            "/api/v1/jobs", {"prompts": ["Acme only"]}, content_type="application/json"
        ).json()
    ids = {
        "document_id": document["id"],
        "conversation_id": conversation["id"],
        "webhook_id": webhook["id"],
        "job_id": job["id"],
    }
    before = acme_state()

    schema = json.loads(acme.get("/api/schema/?format=json").content)
    every_scope = list(APIKey.Scope.values)
    globex = api(settings.BASE_DOMAIN, key_for(world.globex, scopes=every_scope))
    globex_on_acme = api(host_of(world.acme), key_for(world.globex, scopes=every_scope))
    checked = []
    for template, operations in schema["paths"].items():
        names = re.findall(r"{(\w+)}", template)
        if not names:
            continue
        assert set(names) <= ids.keys(), f"no acme object for {template}: add one above"
        path = template.format(**ids)
        for method in METHODS:
            if method not in operations:
                continue
            body = BODIES.get(template, {})
            for client, expected in ((globex, 404), (globex_on_acme, 401)):
                response = client.generic(
                    method.upper(), path, json.dumps(body), content_type="application/json"
                )
                assert response.status_code == expected, (method, path, response.content)
                assert "Acme only" not in response.content.decode()
            checked.append(f"{method.upper()} {template}")
    assert acme_state() == before
    # The matrix really covered the object endpoints (and grows with them).
    assert {
        "GET /api/v1/documents/{document_id}",
        "DELETE /api/v1/documents/{document_id}",
        "GET /api/v1/conversations/{conversation_id}",
        "DELETE /api/v1/conversations/{conversation_id}",
        "GET /api/v1/conversations/{conversation_id}/messages",
        "POST /api/v1/conversations/{conversation_id}/messages",
        "GET /api/v1/webhooks/{webhook_id}",
        "DELETE /api/v1/webhooks/{webhook_id}",
        "POST /api/v1/webhooks/{webhook_id}/rotate-secret",
        "POST /api/v1/webhooks/{webhook_id}/test",
        "GET /api/v1/webhooks/{webhook_id}/deliveries",
        "GET /api/v1/jobs/{job_id}",
        "GET /api/v1/jobs/{job_id}/results",
        "POST /api/v1/jobs/{job_id}/cancel",
    } <= set(checked)
