"""Schemathesis against /api/schema/, once with acme's key and once with globex's, each tenant
holding one ingested document. Every API operation gets generated valid and invalid requests,
then chains of calls that follow the links Schemathesis infers (upload, then get, search and
delete that document). Bounded and derandomised: CI runs the same cases every time. Every
response must be no 5xx, a documented status code, content type and headers, and a body that
matches its schema; a request without the key must get 401.

The API runs in-process through the WSGI application, in the test's thread and so inside the
test's transaction (uploads during the run queue ingestion on commit, which never comes: the
request handling is fuzzed, not extraction)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django_tenants.utils import tenant_context
from hypothesis import settings as hypothesis_settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.config import SchemathesisConfig

from retrieval.services import document_upload
from saas.lib.redis import sync_client
from saas.wsgi import application
from tenants.models import APIKey
from tenants.services.api_keys import api_key_create
from tests.conftest import World

pytestmark = pytest.mark.django_db(databases=["default", "ledger"])

SCHEMA_URL = "/api/schema/?format=json"
NO_LIMIT = {
    "key_per_minute": 1_000_000,
    "tenant_per_minute": 1_000_000,
    "key_tokens_per_minute": 10**9,
    "tenant_tokens_per_minute": 10**9,
}
REFUNDS = b"# Refund policy\n\nAnnual plans can be refunded within 30 days of purchase.\n"
CONFIG = {
    "checks": {
        # Schema-valid input the service refuses on content (a PNG, a duplicate upload, a query
        # that is only whitespace) is a documented 400, not a failure.
        "positive_data_acceptance": {"enabled": False},
        # DRF coerces compatible JSON types ("5" for 5, 0 for "0") by design; invalid input must
        # still get a documented 4xx problem, which the other checks hold it to.
        "negative_data_rejection": {"enabled": False},
    },
}
BOUNDED = hypothesis_settings(deadline=None, derandomize=True, database=None)


@contextmanager
def in_test_transaction() -> Iterator[None]:
    """Django closes a connection it finds inside a transaction at the start and end of every
    request; in-process requests must keep the test's (Django's test client does the same)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture(params=["acme", "globex"])
def api_schema(request, world: World, settings, django_capture_on_commit_callbacks):
    """The served schema, authenticated with a key (every scope) of the persona tenant, which
    holds one ingested document (so lists and searches have results to validate). Rate limits
    out of the way: a 429 is documented, but would hide everything behind it."""
    settings.API_RATE_LIMITS = dict.fromkeys(settings.API_RATE_LIMITS, NO_LIMIT)
    tenant = getattr(world, request.param)
    key, raw = api_key_create(tenant=tenant, name="Schemathesis", scopes=APIKey.Scope.values)
    # In the tenant's schema, as the API would be: queued tasks carry the current schema.
    with tenant_context(tenant), django_capture_on_commit_callbacks(execute=True):
        document_upload(tenant=tenant, filename="refunds.md", data=REFUNDS, api_key=key)
    config = SchemathesisConfig.from_dict(
        {**CONFIG, "auth": {"openapi": {"apiKey": {"bearer": raw}}}}
    )
    with in_test_transaction():
        served = schemathesis.openapi.from_wsgi(SCHEMA_URL, application, config=config)
        yield served.include(path_regex=r"^/api/v1/")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(BOUNDED, max_examples=25)
def test_it_answers_every_generated_request_as_documented(case):
    case.call_and_validate()


def test_it_answers_every_chain_of_linked_requests_as_documented(api_schema):
    class EachRunRolledBack(api_schema.as_state_machine()):
        """Every run starts from the same data (one document), so Hypothesis can replay it."""

        def setup(self) -> None:
            self._savepoint = transaction.atomic()
            self._savepoint.__enter__()

        def teardown(self) -> None:
            transaction.set_rollback(True)
            self._savepoint.__exit__(None, None, None)
            # Stored idempotent responses name rows just rolled back: they go too.
            redis = sync_client()
            for key in redis.scan_iter(match="atrium:idempotency:*"):
                redis.delete(key)

    run_state_machine_as_test(
        EachRunRolledBack,
        settings=hypothesis_settings(BOUNDED, max_examples=15, stateful_step_count=6),
    )
