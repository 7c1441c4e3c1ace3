"""The REST API foundation: tenant API keys, tenant resolution, scopes, problem+json errors,
OpenAPI, and the knowledge-base endpoints (documents, search)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from retrieval.models import Document
from saas.audit.models import AuditEvent
from tenants.models import APIKey, Membership, Role, User
from tenants.services.api_keys import api_key_create, api_key_revoke
from tests.conftest import host_of

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])

ALL = list(APIKey.Scope.values)
REFUNDS = b"# Refund policy\n\nAnnual plans can be refunded within 30 days of purchase.\n"


@pytest.fixture(autouse=True)
def _run_queued_tasks(django_capture_on_commit_callbacks):
    """Uploads queue ingestion on commit; run it (Celery is eager in tests) after each one."""
    global _capture
    _capture = django_capture_on_commit_callbacks
    yield
    _capture = None


_capture = None


def key_for(tenant, scopes=ALL, **extra) -> str:
    return api_key_create(tenant=tenant, name="CI", scopes=scopes, **extra)[1]


def api(host: str, key: str | None = None) -> Client:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return Client(HTTP_HOST=host, **headers)


def upload(client: Client, name: str = "refunds.md", data: bytes = REFUNDS):
    with _capture(execute=True):
        return client.post("/api/v1/documents", {"file": SimpleUploadedFile(name, data)})


def test_create_api_key_prints_the_key_once_alone_on_a_line_and_stores_only_a_hash(world, capsys):
    call_command("create_api_key", "--tenant", "acme", "--name", "Zapier", "--scopes", "search")
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("atr_live_")
    key = APIKey.objects.get(tenant=world.acme, name="Zapier")
    assert key.scopes == ["search"] and line not in {key.secret_hash, key.key_id}
    secret = line.removeprefix(f"atr_live_{key.key_id}_")  # may itself contain "_"
    assert len(secret) == 43 and secret not in key.secret_hash
    assert key.secret_hash == hashlib.sha256(line.encode()).hexdigest()  # a hash, not the key
    with schema_context("t_acme"):
        assert AuditEvent.objects.filter(action="api_key.created", target="Zapier").exists()


def test_every_bad_key_gets_the_same_generic_401(world, settings):
    good = key_for(world.acme)
    expired = key_for(world.acme)
    APIKey.objects.filter(key_id=expired.split("_")[2]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    revoked = key_for(world.acme)
    api_key_revoke(key=APIKey.objects.get(key_id=revoked.split("_")[2]))
    wrong_secret = good[:-4] + "AAAA"
    bodies = set()
    for key in (None, "nonsense", "atr_live_", wrong_secret, expired, revoked, "x" * 5000):
        response = api(settings.BASE_DOMAIN, key).get("/api/v1/documents")
        assert (
            response.status_code == 401 and response["Content-Type"] == "application/problem+json"
        )
        assert response["WWW-Authenticate"].startswith("Bearer")
        bodies.add(response.content)
    assert len(bodies) == 1 and b"Invalid or missing API key." in bodies.pop()
    assert api(settings.BASE_DOMAIN, good).get("/api/v1/documents").status_code == 200


def test_the_key_picks_the_tenant_and_a_tenant_host_refuses_other_tenants_keys(world, settings):
    acme_key, globex_key = key_for(world.acme), key_for(world.globex)
    assert upload(api(settings.BASE_DOMAIN, acme_key)).status_code == 201
    globex_docs = api(settings.BASE_DOMAIN, globex_key).get("/api/v1/documents").json()
    assert globex_docs["results"] == []  # acme's upload went to acme
    assert api(host_of(world.acme), globex_key).get("/api/v1/documents").status_code == 401
    spoofed = api(settings.BASE_DOMAIN, globex_key).get(
        "/api/v1/documents", HTTP_X_FORWARDED_HOST=host_of(world.acme)
    )
    assert spoofed.json()["results"] == []
    assert len(api(host_of(world.acme), acme_key).get("/api/v1/documents").json()["results"]) == 1


def test_scopes_limit_what_a_key_may_do(world, settings):
    reader = key_for(world.acme, scopes=["documents:read"])
    response = upload(api(settings.BASE_DOMAIN, reader))
    assert response.status_code == 403
    assert "documents:write" in response.json()["detail"]
    search = api(settings.BASE_DOMAIN, reader).post(
        "/api/v1/search", {"query": "refunds"}, content_type="application/json"
    )
    assert search.status_code == 403


def test_documents_upload_list_get_and_delete(world, settings):
    client = api(settings.BASE_DOMAIN, key_for(world.acme))
    created = upload(client).json()
    assert created["status"] == "queued" and created["filename"] == "refunds.md"  # at the time
    document = client.get(f"/api/v1/documents/{created['id']}").json()
    assert document["status"] == "ready" and document["chunk_count"] >= 1
    duplicate = upload(client, "copy.md")
    assert duplicate.status_code == 400 and "already in the knowledge base" in str(
        duplicate.json()["errors"]["file"]
    )
    assert client.delete(f"/api/v1/documents/{created['id']}").status_code == 204
    assert client.get(f"/api/v1/documents/{created['id']}").status_code == 404
    with schema_context("t_acme"):
        deleted = AuditEvent.objects.get(action="document.deleted")
        assert deleted.data == {"api_key": APIKey.objects.get(tenant=world.acme).key_id}


def test_documents_are_listed_newest_first_with_a_cursor(world, settings):
    client = api(settings.BASE_DOMAIN, key_for(world.acme))
    for number in range(5):
        upload(client, f"note-{number}.txt", f"Note {number} on refunds.".encode())
    first = client.get("/api/v1/documents?limit=2").json()
    assert [d["filename"] for d in first["results"]] == ["note-4.txt", "note-3.txt"]
    second = client.get(first["next"]).json()
    assert [d["filename"] for d in second["results"]] == ["note-2.txt", "note-1.txt"]
    for limit in ("abc", "0", "201", "-1"):
        response = client.get(f"/api/v1/documents?limit={limit}")
        assert response.status_code == 400 and "limit" in response.json()["errors"]


def test_options_tells_what_an_endpoint_allows_to_any_valid_key_only(world, settings):
    client = api(settings.BASE_DOMAIN, key_for(world.acme, scopes=["search"]))
    response = client.options("/api/v1/documents")
    assert response.status_code == 200 and set(response["Allow"].split(", ")) >= {"GET", "POST"}
    assert api(settings.BASE_DOMAIN).options("/api/v1/documents").status_code == 401


def test_search_returns_cited_passages_of_the_keys_tenant_only(world, settings):
    acme = api(settings.BASE_DOMAIN, key_for(world.acme))
    globex = api(settings.BASE_DOMAIN, key_for(world.globex))
    document_id = upload(acme).json()["id"]
    body = {"query": "Can I get a refund on a yearly plan?", "k": 3}
    hits = acme.post("/api/v1/search", body, content_type="application/json").json()["results"]
    assert hits and hits[0]["document_id"] == document_id and hits[0]["title"] == "Refund policy"
    assert globex.post("/api/v1/search", body, content_type="application/json").json() == {
        "results": []
    }
    # acme's document id in globex's filter finds nothing (and does not widen the search)
    scoped = {**body, "document_ids": [document_id]}
    response = globex.post("/api/v1/search", scoped, content_type="application/json")
    assert response.json() == {"results": []}


def test_another_tenants_key_sees_no_acme_object(world, settings):
    acme = api(settings.BASE_DOMAIN, key_for(world.acme))
    globex = api(settings.BASE_DOMAIN, key_for(world.globex))
    document_id = upload(acme).json()["id"]
    assert globex.get(f"/api/v1/documents/{document_id}").status_code == 404
    assert globex.delete(f"/api/v1/documents/{document_id}").status_code == 404
    with schema_context("t_acme"):
        assert Document.objects.filter(public_id=document_id).exists()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b'{"query": 42, "k": "many"}', "application/json"),
        (b'{"query": "a\\u0000b"}', "application/json"),
        (b"\xff\xfe\xfa", "application/json"),
        (json.dumps({"query": "x", "tags": ["t"] * 1000}).encode(), "application/json"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
        (b"query=refunds", "application/x-www-form-urlencoded"),
    ],
)
def test_bad_input_gets_a_problem_never_a_500(world, settings, body, content_type):
    client = api(settings.BASE_DOMAIN, key_for(world.acme))
    response = client.post("/api/v1/search", body, content_type=content_type)
    assert 400 <= response.status_code < 500
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code


def test_unknown_api_paths_answer_with_a_problem(world, settings):
    response = api(settings.BASE_DOMAIN).get("/api/v1/nope")
    assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"


def test_the_openapi_schema_and_docs_are_served_without_a_key(world, settings):
    schema = api(settings.BASE_DOMAIN).get("/api/schema/?format=json")
    assert schema.status_code == 200
    spec = schema.json()
    assert {"/api/v1/documents", "/api/v1/documents/{document_id}", "/api/v1/search"} <= set(
        spec["paths"]
    )
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert "401" in spec["paths"]["/api/v1/search"]["post"]["responses"]
    docs = api(settings.BASE_DOMAIN).get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content.lower()


# --- the API keys page -----------------------------------------------------------------------


def test_an_admin_creates_a_key_sees_it_once_and_revokes_it(world, alice_client, settings):
    response = alice_client.post(
        "/settings/api-keys/", {"name": "Zapier", "scopes": ["search", "documents:read"]}
    )
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    raw = re.search(rb"atr_live_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", response.content).group().decode()
    listed = alice_client.get("/settings/api-keys/").content.decode()
    assert "Zapier" in listed and raw not in listed  # shown once, never again
    assert api(settings.BASE_DOMAIN, raw).get("/api/v1/documents").status_code == 200
    key = APIKey.objects.get(name="Zapier")
    assert alice_client.post(f"/settings/api-keys/{key.pk}/revoke/").status_code == 302
    assert api(settings.BASE_DOMAIN, raw).get("/api/v1/documents").status_code == 401
    with schema_context("t_acme"):
        assert AuditEvent.objects.filter(action="api_key.revoked", target="Zapier").exists()


def test_the_keys_page_refuses_bad_input_members_and_other_tenants(
    world, alice_client, bob_client, charlie_on_acme
):
    empty = alice_client.post("/settings/api-keys/", {"name": "", "scopes": []})
    assert empty.status_code == 400 and not APIKey.objects.filter(tenant=world.acme).exists()
    assert bob_client.get("/settings/api-keys/").status_code == 403  # members: not admins
    assert charlie_on_acme.get("/settings/api-keys/").status_code == 404
    globex_key = APIKey.objects.get(pk=api_key_create(
        tenant=world.globex, name="G", scopes=["search"]
    )[0].pk)  # fmt: skip
    assert alice_client.post(f"/settings/api-keys/{globex_key.pk}/revoke/").status_code == 404
    globex_key.refresh_from_db()
    assert globex_key.revoked_at is None


def test_a_key_survives_its_creator_leaving(world, alice_client, settings):
    leaver = User.objects.create_user(email="leaver@acme.test", password="x-Password-123")
    Membership.objects.create(user=leaver, tenant=world.acme, role=Role.ADMIN)
    _key, raw = api_key_create(tenant=world.acme, name="Bot", scopes=["search"], acting_user=leaver)
    leaver.delete()
    response = api(settings.BASE_DOMAIN, raw).post(
        "/api/v1/search", {"query": "refunds"}, content_type="application/json"
    )
    assert response.status_code == 200


# --- rate limits -----------------------------------------------------------------------------


def test_every_response_carries_rate_limit_headers_and_the_limit_answers_429(world, settings):
    settings.API_RATE_LIMITS = {
        **settings.API_RATE_LIMITS, "free": {"key_per_minute": 3, "tenant_per_minute": 100}
    }  # fmt: skip
    client = api(settings.BASE_DOMAIN, key_for(world.acme))
    remaining = []
    for _ in range(3):
        response = client.get("/api/v1/documents")
        assert response.status_code == 200 and response["RateLimit-Limit"] == "3"
        remaining.append(int(response["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    refused = client.get("/api/v1/documents")
    assert refused.status_code == 429 and refused["Content-Type"] == "application/problem+json"
    assert int(refused["Retry-After"]) >= 1 and refused["RateLimit-Remaining"] == "0"
    # Another tenant's key has buckets of its own.
    assert (
        api(settings.BASE_DOMAIN, key_for(world.globex)).get("/api/v1/documents").status_code == 200
    )


def test_the_tenant_limit_covers_all_its_keys(world, settings):
    settings.API_RATE_LIMITS = {
        **settings.API_RATE_LIMITS, "free": {"key_per_minute": 100, "tenant_per_minute": 2}
    }  # fmt: skip
    first, second = key_for(world.acme), key_for(world.acme)
    assert api(settings.BASE_DOMAIN, first).get("/api/v1/documents").status_code == 200
    assert api(settings.BASE_DOMAIN, second).get("/api/v1/documents").status_code == 200
    assert api(settings.BASE_DOMAIN, second).get("/api/v1/documents").status_code == 429


def test_a_parallel_burst_of_50_against_a_limit_of_10_admits_at_most_10(world):
    from concurrent.futures import ThreadPoolExecutor

    from saas.lib.ratelimit import Bucket, buckets_take

    day = 86400.0  # refill too slow to matter during the test
    key, tenant = f"test:{uuid.uuid4()}", f"test:{uuid.uuid4()}"
    buckets = [Bucket(key, 10, day), Bucket(tenant, 1000, day)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        decisions = list(pool.map(lambda _: buckets_take(buckets), range(50)))
    assert sum(d.admitted for d in decisions) == 10
    refused = [d for d in decisions if not d.admitted]
    assert all(d.retry_after_s >= 1 and d.remaining == 0 for d in refused)
    # A refused request charged neither bucket: the tenant bucket lost only 10 tokens.
    assert buckets_take([Bucket(tenant, 1000, day)]).remaining == 1000 - 10 - 1


# --- found by Schemathesis (tests/test_api_fuzz.py) -------------------------------------------


def test_it_documents_errors_as_problem_json_and_the_document_list_as_cursor_pages(world, settings):
    spec = api(settings.BASE_DOMAIN).get("/api/schema/?format=json").json()
    operations = [(path, op) for path, ops in spec["paths"].items() for op in ops.values()]
    for path, operation in operations:
        if not path.startswith("/api/v1/"):
            continue
        for status, response in operation["responses"].items():
            if status >= "400":
                assert list(response["content"]) == ["application/problem+json"], (path, status)
    listing = spec["paths"]["/api/v1/documents"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"cursor", "limit"}
    page = listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page_schema = spec["components"]["schemas"][page.split("/")[-1]]
    assert set(page_schema["properties"]) == {"next", "previous", "results"}  # not an array
    for body_path in ("/api/v1/documents", "/api/v1/search"):
        assert {"406", "413", "415"} <= set(spec["paths"][body_path]["post"]["responses"])


def test_it_lists_nested_field_errors_under_one_path_each(world, settings):
    client = api(settings.BASE_DOMAIN, key_for(world.acme))
    body = {"query": "refunds", "tags": ["ok", None, 7.5, ["x"]]}
    response = client.post("/api/v1/search", body, content_type="application/json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"tags.1", "tags.3"}  # 7.5 passes as "7.5"
    assert all(isinstance(m, str) for messages in errors.values() for m in messages)


def test_it_answers_unknown_api_paths_with_a_problem_for_any_method_and_path(world, settings):
    browser_like = Client(HTTP_HOST=settings.BASE_DOMAIN, enforce_csrf_checks=True)
    for method, path in [
        ("delete", "/api/v1/documents/not-a-uuid"),  # was Django's HTML CSRF 403
        ("get", "/api/v1/documents/a%0Ab"),  # a newline in the path: was the HTML 404 page
    ]:
        response = getattr(browser_like, method)(path)
        assert response.status_code == 404, (method, path)
        assert response["Content-Type"] == "application/problem+json"


def test_it_answers_405_for_a_method_an_endpoint_lacks_and_head_like_get(world, settings):
    client = api(settings.BASE_DOMAIN, key_for(world.acme))
    put = client.put("/api/v1/documents")
    assert put.status_code == 405 and put["Content-Type"] == "application/problem+json"
    assert put["Allow"].startswith("GET, POST")
    assert client.get("/api/v1/search").status_code == 405  # was 403 "lacks the scope"
    assert client.head("/api/v1/documents").status_code == 200
    search_only = api(settings.BASE_DOMAIN, key_for(world.acme, scopes=["search"]))
    assert search_only.head("/api/v1/documents").status_code == 403


def test_it_refuses_a_body_too_big_or_with_too_many_fields_with_a_problem_not_a_500(
    world, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    client = api(settings.BASE_DOMAIN, key_for(world.acme))
    big = client.post("/api/v1/search", {"query": "a" * 2000}, content_type="application/json")
    assert big.status_code == 413 and big["Content-Type"] == "application/problem+json"
    fields = client.post("/api/v1/documents", {f"field{n}": "x" for n in range(10)})
    assert fields.status_code == 400 and fields["Content-Type"] == "application/problem+json"
