"""Base websocket consumer for tenant pages: the same rules as `TenantMemberRequiredMixin`.

A socket is accepted only on an active tenant's host, for a signed-in member whose session was
created on that host. Every group it joins is named with the tenant's schema, so an event
sent to one tenant's group can never reach another tenant's sockets. Removing the member
closes their sockets on that tenant, signing out closes the session's (`sockets_close_*`).
Clients only listen on these sockets (unless a subclass says otherwise): anything they send
is ignored, and an oversized frame closes the socket."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from tenants.middleware import SESSION_TENANT_KEY
from tenants.models import Tenant
from tenants.selectors import membership_for

logger = logging.getLogger(__name__)

# Close codes (4000-4999 are the application's own).
CLOSE_NOT_ALLOWED = 4403
CLOSE_MESSAGE_TOO_BIG = 1009
MAX_CLIENT_FRAME = 4096


def tenant_group(tenant: Tenant, topic: str) -> str:
    """A channel-layer group of one tenant (group names: ASCII letters, digits, `-_.`)."""
    return f"{tenant.schema_name}.{topic}"


def _user_group(tenant: Tenant, user_id: int) -> str:
    return tenant_group(tenant, f"user.{user_id}")


def _session_group(tenant: Tenant, session_key: str) -> str:
    return tenant_group(tenant, f"session.{hashlib.sha256(session_key.encode()).hexdigest()[:32]}")


def sockets_close_for_user(tenant: Tenant, user_id: int) -> None:
    """Close every socket `user_id` has open on `tenant` (their membership ended)."""
    _close_group(_user_group(tenant, user_id))


def sockets_close_for_session(tenant: Tenant, session_key: str) -> None:
    """Close the sockets opened with this session on `tenant` (it signed out)."""
    _close_group(_session_group(tenant, session_key))


def _close_group(group: str) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(group, {"type": "force.close"})
    except Exception:  # the socket's next membership check refuses it anyway
        logger.warning("closing sockets failed", exc_info=True)


class TenantMemberConsumer(AsyncJsonWebsocketConsumer):
    """Subclasses set `topic`; events sent to `tenant_group(tenant, topic)` reach the socket."""

    topic = ""

    async def connect(self) -> None:
        self.tenant: Tenant | None = self.scope.get("tenant")
        if not await database_sync_to_async(self._is_member)() or not await self.allowed():
            await self.close(code=CLOSE_NOT_ALLOWED)
            return
        self.group = tenant_group(self.tenant, self.topic)
        self.groups_joined = [
            self.group,
            _user_group(self.tenant, self.scope["user"].pk),
            _session_group(self.tenant, self.scope["session"].session_key or ""),
        ]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def allowed(self) -> bool:
        """A subclass's own condition for a member's socket, checked before it is accepted."""
        return True

    def _is_member(self) -> bool:
        tenant, user, session = self.tenant, self.scope.get("user"), self.scope.get("session")
        if tenant is None or tenant.schema_name == settings.PUBLIC_SCHEMA_NAME:
            return False
        if tenant.status != Tenant.Status.ACTIVE or user is None or not user.is_authenticated:
            return False
        if session is None or session.get(SESSION_TENANT_KEY) != tenant.schema_name:
            return False  # a session cookie carried over from another tenant's host
        return membership_for(tenant=tenant, user=user) is not None

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def force_close(self, event: dict[str, Any]) -> None:
        await self.close(code=CLOSE_NOT_ALLOWED)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if len(text_data or bytes_data or "") > MAX_CLIENT_FRAME:
            await self.close(code=CLOSE_MESSAGE_TOO_BIG)

    async def send_event(self, event: dict[str, Any]) -> None:
        await self.send_json(event["payload"])
