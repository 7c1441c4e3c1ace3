"""Documents the project writes itself (Atrium's own guide) to seed the demo tenant."""

from __future__ import annotations

import hashlib
from pathlib import Path

from django_tenants.utils import tenant_context

from retrieval.models import Document
from retrieval.services import document_ingest, document_upload
from tenants.models import Tenant, User

DEMO_DOCUMENTS = sorted(Path(__file__).parent.glob("*.md"))


def demo_knowledge_base_seed(*, tenant: Tenant, owner: User) -> int:
    """Upload and index the demo documents not there yet; returns how many were added."""
    added = 0
    for path in DEMO_DOCUMENTS:
        data = path.read_bytes()
        with tenant_context(tenant):
            present = Document.objects.filter(
                content_hash=hashlib.sha256(data).hexdigest()
            ).exists()
        if present:
            continue
        document = document_upload(
            tenant=tenant, user=owner, filename=path.name, data=data, enqueue=False
        )
        document_ingest(tenant=tenant, document_id=document.pk)
        added += 1
    return added
