"""Knowledge-base tasks (queue `ingestion`). Queued from a tenant's context, they run in it."""

from __future__ import annotations

from celery import shared_task
from django.db import connection

from retrieval.services import document_ingest


@shared_task(max_retries=3, default_retry_delay=10)
def document_ingest_task(*, document_id: int) -> None:
    document_ingest(tenant=connection.tenant, document_id=document_id)
