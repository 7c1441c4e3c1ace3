"""Webhook endpoints: the REST API, Standard Webhooks signatures (verified with the reference
library, as receivers will), secret rotation, retries with backoff, SSRF refusals, secrets at
rest and tenant isolation. A real HTTP receiver runs in a thread; Celery is eager, so a
delivery (and each retry queued with a countdown) runs when the request's transaction commits."""

from __future__ import annotations

import io
import json
import socket
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context
from standardwebhooks import Webhook, WebhookVerificationError

from ai import secrets as ai_secrets
from saas.audit.models import AuditEvent
from saas.webhooks.delivery import webhook_delivery_attempt
from saas.webhooks.models import WebhookDelivery, WebhookEndpoint
from saas.webhooks.network import AddressRefused, address_is_public, target_resolve
from saas.webhooks.services import webhook_emit
from saas.webhooks.tasks import webhook_deliver_task, webhook_deliveries_due_task
from tenants.services.api_keys import api_key_create

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])


class Receiver:
    """A local HTTP endpoint: answers each POST with the next scripted status (then 200) and
    keeps what it got: (path, headers, body)."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((self.path, dict(self.headers.items()), body))
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver():
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    """A local receiver over http, and retries without waiting (Celery is eager)."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_BACKOFF_BASE_S = 0
    settings.WEBHOOK_MAX_ATTEMPTS = 8


def key_for(tenant, scopes=("webhooks",)) -> str:
    return api_key_create(tenant=tenant, name="Hooks", scopes=list(scopes))[1]


class API:
    """The REST API with a tenant's key; queued tasks run when each request commits."""

    def __init__(self, key: str, capture) -> None:
        self.client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {key}")
        self.capture = capture

    def __getattr__(self, method: str):
        def call(path: str, body: dict | None = None):
            with self.capture(execute=True):
                if body is None:
                    return getattr(self.client, method)(f"/api/v1/{path}")
                return getattr(self.client, method)(
                    f"/api/v1/{path}", json.dumps(body), content_type="application/json"
                )

        return call


@pytest.fixture
def acme_api(world, django_capture_on_commit_callbacks) -> API:
    return API(key_for(world.acme), django_capture_on_commit_callbacks)


@pytest.fixture
def globex_api(world, django_capture_on_commit_callbacks) -> API:
    return API(key_for(world.globex), django_capture_on_commit_callbacks)


def create(api: API, url: str, **body) -> dict:
    response = api.post("webhooks", {"url": url, **body})
    assert response.status_code == 201, response.content
    return response.json()


def deliveries(api: API, webhook_id: str) -> list[dict]:
    response = api.get(f"webhooks/{webhook_id}/deliveries")
    assert response.status_code == 200
    return response.json()["results"]


def verified(secret: str, request: tuple[str, dict[str, str], bytes]) -> dict:
    return Webhook(secret).verify(request[2], request[1])


# --- delivery and signatures -----------------------------------------------------------------


def test_it_delivers_a_ping_that_standard_webhooks_verifies(acme_api, receiver):
    created = create(acme_api, receiver.url(), description="CI", events=["document.ready"])
    assert created["secret"].startswith("whsec_") and created["events"] == ["document.ready"]
    assert created["created_by"] == "API key “Hooks”" and created["active"] is True

    response = acme_api.post(f"webhooks/{created['id']}/test")

    assert response.status_code == 202
    queued = response.json()
    assert queued["event_type"] == "ping" and queued["status"] == "pending"
    (request,) = receiver.received
    path, headers, body = request
    assert path == "/hook" and headers["Content-Type"] == "application/json"
    assert verified(created["secret"], request) == json.loads(body)
    assert json.loads(body)["type"] == "ping"
    assert json.loads(body)["data"]["webhook_id"] == created["id"]
    assert headers["webhook-id"] == queued["event_id"]
    signature = headers["webhook-signature"]
    assert signature.startswith("v1,") and " " not in signature  # one secret, one signature
    with pytest.raises(WebhookVerificationError):  # another secret does not verify it
        Webhook("whsec_" + "A" * 43 + "=").verify(body, headers)
    (delivery,) = deliveries(acme_api, created["id"])
    assert delivery["id"] == queued["id"] and delivery["status"] == "succeeded"
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == 200
    assert delivery["delivered_at"] and delivery["next_attempt_at"] is None


def test_it_signs_with_both_secrets_during_the_grace_period_after_a_rotation(
    acme_api, receiver, world
):
    created = create(acme_api, receiver.url())
    old = created["secret"]

    rotated = acme_api.post(f"webhooks/{created['id']}/rotate-secret")

    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated.json()["previous_secret_expires_at"]
    acme_api.post(f"webhooks/{created['id']}/test")
    (request,) = receiver.received
    assert len(request[1]["webhook-signature"].split(" ")) == 2
    assert verified(new, request) == verified(old, request)  # a receiver on either secret

    # Grace over: only the new secret signs.
    with schema_context(world.acme.schema_name):
        WebhookEndpoint.objects.update(previous_secret_expires_at=timezone.now())
    acme_api.post(f"webhooks/{created['id']}/test")
    latest = receiver.received[1]
    assert len(latest[1]["webhook-signature"].split(" ")) == 1
    assert verified(new, latest)["type"] == "ping"
    with pytest.raises(WebhookVerificationError):
        verified(old, latest)


def test_it_retries_a_failing_receiver_with_the_same_event_id_until_it_succeeds(acme_api, receiver):
    created = create(acme_api, receiver.url())
    receiver.script = [500, 503]

    acme_api.post(f"webhooks/{created['id']}/test")

    assert len(receiver.received) == 3
    assert len({headers["webhook-id"] for _, headers, _ in receiver.received}) == 1
    for request in receiver.received:  # each attempt freshly signed
        verified(created["secret"], request)
    (delivery,) = deliveries(acme_api, created["id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200 and delivery["last_error"] == ""


def test_it_fails_a_delivery_after_the_last_attempt(acme_api, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    created = create(acme_api, receiver.url())
    receiver.script = [500] * 10

    acme_api.post(f"webhooks/{created['id']}/test")

    assert len(receiver.received) == 4
    (delivery,) = deliveries(acme_api, created["id"])
    assert delivery["status"] == "failed" and delivery["attempts"] == 4
    assert delivery["last_status_code"] == 500 and "HTTP 500" in delivery["last_error"]
    assert delivery["next_attempt_at"] is None


def test_it_does_not_follow_redirects(acme_api, receiver, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    created = create(acme_api, receiver.url())
    receiver.script = [302]

    acme_api.post(f"webhooks/{created['id']}/test")

    assert [path for path, _, _ in receiver.received] == ["/hook"]
    (delivery,) = deliveries(acme_api, created["id"])
    assert delivery["status"] == "failed" and delivery["last_status_code"] == 302


def test_it_never_sends_a_delivery_twice_when_its_task_runs_again(acme_api, receiver, world):
    created = create(acme_api, receiver.url())
    acme_api.post(f"webhooks/{created['id']}/test")
    assert len(receiver.received) == 1
    with schema_context(world.acme.schema_name):
        delivery = WebhookDelivery.objects.get()

    with schema_context(world.acme.schema_name):
        webhook_deliver_task.apply(kwargs={"delivery_id": delivery.pk})
    webhook_delivery_attempt(tenant=world.acme, delivery_id=delivery.pk)

    assert len(receiver.received) == 1
    with schema_context(world.acme.schema_name):
        delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempts == 1


def test_it_keeps_a_distant_retry_in_the_database_until_the_beat_queues_it(
    acme_api, receiver, world, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_BACKOFF_BASE_S = 3600
    created = create(acme_api, receiver.url())
    receiver.script = [500]

    acme_api.post(f"webhooks/{created['id']}/test")

    assert len(receiver.received) == 1  # no countdown task for an hour away
    with schema_context(world.acme.schema_name):
        delivery = WebhookDelivery.objects.get()
    wait = delivery.next_attempt_at - timezone.now()
    assert timedelta(minutes=47) < wait < timedelta(minutes=73)  # an hour, +-20% jitter
    with django_capture_on_commit_callbacks(execute=True):
        webhook_deliveries_due_task.apply()
    assert len(receiver.received) == 1  # not due yet

    with schema_context(world.acme.schema_name):
        past = timezone.now() - timedelta(minutes=11)
        WebhookDelivery.objects.update(next_attempt_at=past, queued_at=past)
    connection.set_schema_to_public()
    with django_capture_on_commit_callbacks(execute=True):
        webhook_deliveries_due_task.apply()

    assert len(receiver.received) == 2
    with schema_context(world.acme.schema_name):
        delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempts == 2


# --- events ----------------------------------------------------------------------------------


def test_it_emits_events_only_to_subscribed_active_endpoints_of_the_tenant(
    acme_api, globex_api, receiver, world, django_capture_on_commit_callbacks
):
    documents = create(acme_api, receiver.url("/documents"), events=["document.ready"])
    everything = create(acme_api, receiver.url("/all"), events=["*"])
    create(acme_api, receiver.url("/jobs"), events=["job.completed", "job.failed"])
    create(globex_api, receiver.url("/globex"))
    with schema_context(world.acme.schema_name):
        WebhookEndpoint.objects.filter(url__endswith="/jobs").update(is_active=False)

    with django_capture_on_commit_callbacks(execute=True):
        webhook_emit(tenant=world.acme, event_type="document.ready", data={"document_id": "d1"})
        webhook_emit(tenant=world.acme, event_type="job.completed", data={"job_id": "j1"})

    got = sorted((path, json.loads(body)["type"]) for path, _, body in receiver.received)
    assert got == [
        ("/all", "document.ready"),
        ("/all", "job.completed"),
        ("/documents", "document.ready"),
    ]
    for path, headers, body in receiver.received:
        secret = everything["secret"] if path == "/all" else documents["secret"]
        data = Webhook(secret).verify(body, headers)["data"]
        assert data in ({"document_id": "d1"}, {"job_id": "j1"})
    with schema_context(world.globex.schema_name):
        assert not WebhookDelivery.objects.exists()
    with pytest.raises(ValueError):
        webhook_emit(tenant=world.acme, event_type="document.exploded", data={})


def test_it_sends_nothing_for_an_event_whose_transaction_rolls_back(acme_api, receiver, world):
    from django.db import transaction

    create(acme_api, receiver.url())
    with pytest.raises(RuntimeError), transaction.atomic():
        webhook_emit(tenant=world.acme, event_type="job.failed", data={"job_id": "j2"})
        raise RuntimeError

    with schema_context(world.acme.schema_name):
        assert not WebhookDelivery.objects.exists()
    assert receiver.received == []


# --- SSRF ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "::1", "::",
        "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254",
        "64:ff9b::a00:1", "2002:a00:1::1", "2001:db8::1",
    ],
)  # fmt: skip
def test_it_counts_private_and_reserved_addresses_as_not_public(address):
    import ipaddress

    assert not address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_it_counts_global_addresses_as_public(address):
    import ipaddress

    assert address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.0.0.8:8443/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost/hook",
        "https://metadata.localhost/hook",
    ],
)
def test_it_refuses_to_register_a_private_address(acme_api, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    response = acme_api.post("webhooks", {"url": url})

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "private" in response.json()["errors"]["url"][0]


@pytest.fixture
def fake_dns(monkeypatch):
    """Host names of our choosing (`.example` names only; everything else resolves normally)."""
    answers: dict[str, list[list[str]]] = {}
    lookups: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        addresses = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
        return [
            (socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (address, port))
            for address in addresses
        ]  # fmt: skip

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, lookups


def test_it_refuses_at_delivery_a_host_that_resolves_to_any_private_address(fake_dns, settings):
    answers, _ = fake_dns
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    answers["mixed.example"] = [["93.184.216.34", "10.0.0.7"]]
    answers["v6.example"] = [["2606:4700:4700::1111", "::ffff:127.0.0.1"]]
    answers["public.example"] = [["93.184.216.34"]]

    for host in ("mixed.example", "v6.example", "localhost"):
        with pytest.raises(AddressRefused):
            target_resolve(f"https://{host}/hook")
    target = target_resolve("https://public.example:8443/hook?x=1")
    assert str(target.url) == "https://93.184.216.34:8443/hook?x=1"
    assert target.host_header == "public.example:8443" and target.sni_hostname == "public.example"


def test_it_refuses_a_delivery_to_a_private_address_once_private_networks_are_off(
    acme_api, receiver, settings, fake_dns
):
    answers, _ = fake_dns
    answers["inside.example"] = [["127.0.0.1"]]
    loopback = create(acme_api, receiver.url())
    named = create(acme_api, f"http://inside.example:{receiver.port}/hook")
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    acme_api.post(f"webhooks/{loopback['id']}/test")
    acme_api.post(f"webhooks/{named['id']}/test")

    assert receiver.received == []
    for webhook in (loopback, named):
        (delivery,) = deliveries(acme_api, webhook["id"])
        assert delivery["status"] == "failed" and delivery["attempts"] == 1
        assert delivery["last_error"].startswith("Refused:")


def test_it_connects_to_the_address_it_checked_not_to_a_second_lookup(acme_api, receiver, fake_dns):
    """DNS rebinding: the name answers a checked address first and another one after; the
    request goes to the first, with the Host header naming the host."""
    answers, lookups = fake_dns
    answers["rebind.example"] = [["127.0.0.1"], ["10.255.255.1"]]
    created = create(acme_api, f"http://rebind.example:{receiver.port}/hook")

    acme_api.post(f"webhooks/{created['id']}/test")

    (request,) = receiver.received
    assert request[1]["Host"] == f"rebind.example:{receiver.port}"
    assert lookups == ["rebind.example"]
    verified(created["secret"], request)


# --- the API ---------------------------------------------------------------------------------


def test_it_stores_the_secret_encrypted_and_never_shows_it_again(acme_api, receiver, world):
    created = create(acme_api, receiver.url())
    secret = created["secret"]
    acme_api.post(f"webhooks/{created['id']}/test")

    with schema_context(world.acme.schema_name), connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(e)::text FROM webhooks_webhookendpoint e")
        (row,) = cursor.fetchone()
        stored = WebhookEndpoint.objects.get()
    assert secret not in row and secret.removeprefix("whsec_") not in row
    assert ai_secrets.secret_decrypt(stored.encrypted_secret) == secret
    listed = acme_api.get("webhooks")
    detail = acme_api.get(f"webhooks/{created['id']}")
    log = acme_api.get(f"webhooks/{created['id']}/deliveries")
    for response in (listed, detail, log):
        assert response.status_code == 200
        assert secret.removeprefix("whsec_") not in response.content.decode()
    assert "secret" not in listed.json()["results"][0] and "secret" not in detail.json()
    with schema_context(world.acme.schema_name):
        for event in AuditEvent.objects.all():
            assert secret.removeprefix("whsec_") not in json.dumps(event.data)


def test_it_lists_gets_and_deletes_endpoints_with_an_audit_trail(acme_api, receiver, world):
    first = create(acme_api, receiver.url("/a"))
    second = create(acme_api, receiver.url("/b"), events=["job.completed", "job.completed"])
    assert second["events"] == ["job.completed"]

    listed = acme_api.get("webhooks").json()["results"]
    assert [webhook["id"] for webhook in listed] == [second["id"], first["id"]]
    assert acme_api.get(f"webhooks/{first['id']}").json()["url"] == receiver.url("/a")
    acme_api.post(f"webhooks/{first['id']}/rotate-secret")
    assert acme_api.delete(f"webhooks/{first['id']}").status_code == 204
    assert acme_api.get(f"webhooks/{first['id']}").status_code == 404

    with schema_context(world.acme.schema_name):
        actions = list(
            AuditEvent.objects.filter(target=first["id"]).values_list("action", flat=True)
        )
    assert sorted(actions) == ["webhook.created", "webhook.deleted", "webhook.secret_rotated"]


def test_it_refuses_another_tenants_endpoint_like_a_missing_one(
    acme_api, globex_api, receiver, world
):
    created = create(acme_api, receiver.url())
    missing = str(uuid.uuid4())
    calls = [
        ("get", "{}"), ("delete", "{}"), ("post", "{}/rotate-secret"), ("post", "{}/test"),
        ("get", "{}/deliveries"),
    ]  # fmt: skip
    for method, path in calls:
        foreign = getattr(globex_api, method)("webhooks/" + path.format(created["id"]))
        absent = getattr(globex_api, method)("webhooks/" + path.format(missing))
        assert foreign.status_code == absent.status_code == 404
        assert foreign.json() == absent.json()

    assert globex_api.get("webhooks").json()["results"] == []
    assert receiver.received == []
    with schema_context(world.acme.schema_name):
        endpoint = WebhookEndpoint.objects.get()
        assert not WebhookDelivery.objects.exists()
    assert ai_secrets.secret_decrypt(endpoint.encrypted_secret) == created["secret"]
    assert endpoint.encrypted_previous_secret == ""


def test_it_needs_the_webhooks_scope(world, django_capture_on_commit_callbacks):
    api = API(key_for(world.acme, scopes=["documents:read"]), django_capture_on_commit_callbacks)

    response = api.get("webhooks")

    assert response.status_code == 403 and "webhooks" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://hooks.example.com/in"}, "url"),
        ({"url": "https://user:pass@hooks.example.com/in"}, "url"),
        ({"url": "ftp://hooks.example.com/in"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://hooks.example.com/in", "events": ["document.exploded"]}, "events.0"),
        ({"url": "https://hooks.example.com/in", "events": "ping"}, "events"),
        ({"url": "https://hooks.example.com/in", "description": "x" * 501}, "description"),
    ],
)
def test_it_answers_invalid_input_with_a_problem_per_field(acme_api, settings, body, field):
    settings.WEBHOOK_ALLOW_HTTP = False

    response = acme_api.post("webhooks", body)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert list(response.json()["errors"]) == [field]


def test_it_limits_the_endpoints_per_tenant(acme_api, globex_api, settings, world):
    settings.WEBHOOK_MAX_ENDPOINTS = 2
    for n in range(2):
        create(acme_api, f"https://hooks.example.com/{n}")

    response = acme_api.post("webhooks", {"url": "https://hooks.example.com/2"})

    assert response.status_code == 400
    assert "Delete one first" in response.json()["errors"]["non_field_errors"][0]
    create(globex_api, "https://hooks.example.com/globex")  # another tenant's own limit
    with schema_context(world.acme.schema_name):
        assert WebhookEndpoint.objects.count() == 2


def test_rotate_webhook_secrets_reencrypts_with_the_newest_key(acme_api, settings, world):
    from cryptography.fernet import Fernet

    created = create(acme_api, "https://hooks.example.com/in")
    acme_api.post(f"webhooks/{created['id']}/rotate-secret")
    old_keys = list(settings.AI_ENCRYPTION_KEYS)
    new_key = Fernet.generate_key().decode()
    try:
        settings.AI_ENCRYPTION_KEYS = [new_key, *old_keys]
        ai_secrets._fernet.cache_clear()
        call_command("rotate_webhook_secrets", stdout=io.StringIO())
        settings.AI_ENCRYPTION_KEYS = [new_key]
        ai_secrets._fernet.cache_clear()
        with schema_context(world.acme.schema_name):
            endpoint = WebhookEndpoint.objects.get()
        assert ai_secrets.secret_decrypt(endpoint.encrypted_secret).startswith("whsec_")
        assert ai_secrets.secret_decrypt(endpoint.encrypted_previous_secret) == created["secret"]
    finally:
        settings.AI_ENCRYPTION_KEYS = old_keys
        ai_secrets._fernet.cache_clear()
