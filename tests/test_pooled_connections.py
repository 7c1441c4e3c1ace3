"""With pooled database connections (DATABASE_POOL_MAX), a connection one tenant's request used
serves the next tenant's request: each must still see only its own schema. Checked against
the real ASGI server (daphne) with a small pool, alternating tenants."""

from __future__ import annotations

import httpx2
import pytest
from django.db import connection

from retrieval.services import document_upload
from tenants.services.api_keys import api_key_create
from tests.conftest import ensure_world

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])


@pytest.fixture
def live_env() -> dict[str, str]:
    return {"DATABASE_POOL_MAX": "2"}


def test_pooled_connections_never_carry_a_tenant_over(daphne_live_server):
    world = ensure_world()
    keys = {}
    owners = ((world.acme, world.alice, "acme-only.md"), (world.globex, world.charlie, "g.md"))
    for tenant, owner, name in owners:
        _, raw = api_key_create(tenant=tenant, name="pool", scopes=["documents:read"])
        document_upload(
            tenant=tenant, user=owner, filename=name, data=f"# {name}\n\nText.".encode(),
            enqueue=False,
        )  # fmt: skip
        keys[name] = raw
    client = httpx2.Client(timeout=30)
    for _ in range(10):
        for name, raw in keys.items():
            response = client.get(
                f"http://127.0.0.1:{daphne_live_server.port}/api/v1/documents",
                headers={"Authorization": f"Bearer {raw}", "Host": "localhost"},
            )
            assert response.status_code == 200, response.text
            assert [d["filename"] for d in response.json()["results"]] == [name]
    # The server really pooled: its connections outlive the requests, at most the pool's size
    # (without a pool each request's connection is closed when it ends).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            [daphne_live_server.application_name],
        )
        assert 1 <= cursor.fetchone()[0] <= 2
