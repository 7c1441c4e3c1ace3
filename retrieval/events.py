"""Push document status changes to the tenant's open documents pages (retrieval.consumers)."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from retrieval.consumers import TOPIC
from saas.lib.consumers import tenant_group
from tenants.models import Tenant

logger = logging.getLogger(__name__)


def document_changed(tenant: Tenant, document_id: int, **state: object) -> None:
    """Sync. A page that misses an event still shows the truth on its next load, so a push
    that fails is logged, never raised into the ingestion it reports on."""
    _push(tenant, {"event": "document", "id": document_id, **state})


def index_changed(tenant: Tenant) -> None:
    """The index (its model, a switch's progress) changed: pages re-render its status."""
    _push(tenant, {"event": "index"})


def _push(tenant: Tenant, payload: dict[str, object]) -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(
            tenant_group(tenant, TOPIC), {"type": "send.event", "payload": payload}
        )
    except Exception:
        logger.warning("document status push failed", exc_info=True)
