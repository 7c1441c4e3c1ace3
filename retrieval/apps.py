from django.apps import AppConfig


class RetrievalConfig(AppConfig):
    """Documents, chunks, ingestion, search (tenant schema); built by the knowledge base issue."""

    name = "retrieval"
