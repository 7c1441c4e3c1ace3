"""Live document status over a websocket (Channels communicator, real Redis channel layer):
only members of the host's tenant get a socket, and they hear only their tenant's documents."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection

from retrieval.services import document_upload
from saas.asgi import application
from tenants.models import Tenant
from tests.conftest import client_on, ensure_world, host_of

# Consumers read sessions and memberships from their own threads: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "ledger"])

NOT_ALLOWED = 4403


def socket(host: str, session_id: str | None = None, origin: str | None = None):
    headers = [(b"host", host.encode()), (b"origin", (origin or f"http://{host}").encode())]
    if session_id:
        headers.append((b"cookie", f"sessionid={session_id}".encode()))
    return WebsocketCommunicator(application, "/ws/documents/", headers=headers)


def session_of(host: str, user) -> str:
    return client_on(host, user).cookies["sessionid"].value


def refused(communicator) -> int | None:
    """The close code if the handshake was refused, else None."""

    async def run():
        connected, code = await communicator.connect()
        if connected:
            await communicator.disconnect()
            return None
        return code

    return async_to_sync(run)()


def upload(tenant, user, text: str):
    return document_upload(tenant=tenant, user=user, filename="policy.md", data=text.encode())


def test_a_member_watches_their_upload_progress_to_ready_and_the_other_tenant_hears_nothing():
    world = ensure_world()
    acme_host, globex_host = host_of(world.acme), host_of(world.globex)
    acme = socket(acme_host, session_of(acme_host, world.alice))
    globex = socket(globex_host, session_of(globex_host, world.charlie))

    async def run():
        assert (await acme.connect())[0] and (await globex.connect())[0]
        document = await sync_to_async(upload)(
            world.acme, world.alice, "# Refunds\n\nAnnual plans are refunded pro rata."
        )
        seen = []
        while not seen or seen[-1]["status"] not in ("ready", "failed"):
            seen.append(await acme.receive_json_from(timeout=20))
        assert await globex.receive_nothing(timeout=0.3)
        await acme.disconnect()
        await globex.disconnect()
        return document, seen

    document, seen = async_to_sync(run)()
    connection.set_schema_to_public()
    assert {event["id"] for event in seen} == {document.pk}
    assert seen[0]["status"] == "queued" and seen[-1] == {
        "event": "document", "id": document.pk, "status": "ready", "progress": 100,
    }  # fmt: skip
    progress = [event["progress"] for event in seen if event["status"] == "processing"]
    assert progress == sorted(progress) and len(progress) >= 3  # the bar moves forward


def test_strangers_and_signed_out_visitors_get_no_socket():
    world = ensure_world()
    acme_host = host_of(world.acme)
    assert refused(socket(acme_host)) == NOT_ALLOWED  # signed out
    assert refused(socket(acme_host, session_of(acme_host, world.charlie))) == NOT_ALLOWED


def test_a_session_from_another_tenants_host_does_not_open_a_socket():
    world = ensure_world()
    acme_host, globex_host = host_of(world.acme), host_of(world.globex)
    # alice is an acme member, but this session was created on globex's host
    carried = session_of(globex_host, world.alice)
    assert refused(socket(acme_host, carried)) == NOT_ALLOWED


def test_the_public_site_unknown_hosts_and_foreign_origins_get_no_socket(settings):
    world = ensure_world()
    acme_host = host_of(world.acme)
    alice_session = session_of(acme_host, world.alice)
    assert refused(socket(settings.BASE_DOMAIN, alice_session)) == NOT_ALLOWED
    assert refused(socket(f"nobody.{settings.BASE_DOMAIN}", alice_session)) == NOT_ALLOWED
    assert refused(socket(acme_host, alice_session, origin="https://evil.example")) is not None


def test_a_suspended_tenant_gets_no_socket():
    world = ensure_world()
    acme_host = host_of(world.acme)
    alice_session = session_of(acme_host, world.alice)
    Tenant.objects.filter(pk=world.acme.pk).update(status=Tenant.Status.SUSPENDED)
    assert refused(socket(acme_host, alice_session)) == NOT_ALLOWED


def test_an_oversized_frame_closes_the_socket():
    world = ensure_world()
    acme_host = host_of(world.acme)
    communicator = socket(acme_host, session_of(acme_host, world.alice))

    async def run():
        assert (await communicator.connect())[0]
        await communicator.send_to(text_data="x" * 10_000)
        closed = await communicator.receive_output(timeout=2)
        await communicator.wait()
        return closed

    assert async_to_sync(run)() == {"type": "websocket.close", "code": 1009}


def test_an_idle_socket_stays_open_past_the_channel_layers_blocking_read():
    """channels_redis blocks 5 s per read; a Redis socket timeout at or under that would end
    the consumer (and the page's socket) every few seconds while nothing happens."""
    from retrieval.events import index_changed

    world = ensure_world()
    host = host_of(world.acme)
    communicator = socket(host, session_of(host, world.alice))

    async def run():
        assert (await communicator.connect())[0]
        assert await communicator.receive_nothing(timeout=6.5)  # idle past one blocking read
        await sync_to_async(index_changed)(world.acme)
        event = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return event

    assert async_to_sync(run)() == {"event": "index"}


def test_removing_a_member_or_signing_out_closes_their_open_sockets():
    from tenants.models import Membership
    from tenants.services.memberships import membership_remove

    world = ensure_world()
    host = host_of(world.acme)
    bob = socket(host, session_of(host, world.bob))
    alice_client = client_on(host, world.alice)
    alice_here = socket(host, alice_client.cookies["sessionid"].value)
    alice_elsewhere = socket(host, session_of(host, world.alice))  # another browser

    async def run():
        for communicator in (bob, alice_here, alice_elsewhere):
            assert (await communicator.connect())[0]
        membership = await sync_to_async(Membership.objects.get)(tenant=world.acme, user=world.bob)
        await sync_to_async(membership_remove)(
            tenant=world.acme, acting_user=world.alice, membership=membership
        )
        bob_closed = await bob.receive_output(timeout=5)
        await sync_to_async(alice_client.post)("/accounts/logout/")
        alice_closed = await alice_here.receive_output(timeout=5)
        still_open = await alice_elsewhere.receive_nothing(timeout=0.5)
        await alice_elsewhere.disconnect()
        return bob_closed, alice_closed, still_open

    bob_closed, alice_closed, still_open = async_to_sync(run)()
    assert bob_closed == {"type": "websocket.close", "code": NOT_ALLOWED}
    assert alice_closed == {"type": "websocket.close", "code": NOT_ALLOWED}
    assert still_open  # signing out in one browser leaves the other's socket alone
