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
    payload = {"event": "document", "id": document_id, **state}
    try:
        async_to_sync(get_channel_layer().group_send)(
            tenant_group(tenant, TOPIC), {"type": "send.event", "payload": payload}
        )
    except Exception:
        logger.warning("document status push failed", exc_info=True)
