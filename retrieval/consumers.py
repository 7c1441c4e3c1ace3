"""Live document status on the documents page: queued -> processing (with progress) -> ready or
failed, pushed by the ingestion task through the tenant's `documents` group."""

from __future__ import annotations

from saas.lib.consumers import TenantMemberConsumer

TOPIC = "documents"


class DocumentsConsumer(TenantMemberConsumer):
    topic = TOPIC
