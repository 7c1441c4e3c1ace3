"""/api/: version 1 endpoints, the OpenAPI schema and its docs. Included on every host (the
API key picks the tenant on the base domain)."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from ai import api as ai_api
from ai.conversations import api as chat_api
from ai.jobs import api as jobs_api
from billing import api as billing_api
from retrieval import api as retrieval_api
from saas.api.errors import not_found
from saas.webhooks import api as webhooks_api

v1 = [
    path("documents", retrieval_api.DocumentsAPI.as_view(), name="api_documents"),
    path("documents/<uuid:document_id>", retrieval_api.DocumentAPI.as_view(), name="api_document"),
    path("search", retrieval_api.SearchAPI.as_view(), name="api_search"),
    path("usage", billing_api.UsageAPI.as_view(), name="api_usage"),
    path("conversations", chat_api.ConversationsAPI.as_view(), name="api_conversations"),
    path(
        "conversations/<uuid:conversation_id>",
        chat_api.ConversationAPI.as_view(),
        name="api_conversation",
    ),
    path(
        "conversations/<uuid:conversation_id>/messages",
        chat_api.MessagesAPI.as_view(),
        name="api_messages",
    ),
    # Bulk jobs (ai/jobs/api.py)
    path("jobs", jobs_api.JobsAPI.as_view(), name="api_jobs"),
    path("jobs/<uuid:job_id>", jobs_api.JobAPI.as_view(), name="api_job"),
    path("jobs/<uuid:job_id>/results", jobs_api.JobResultsAPI.as_view(), name="api_job_results"),
    path("jobs/<uuid:job_id>/cancel", jobs_api.JobCancelAPI.as_view(), name="api_job_cancel"),
    # OpenAI-compatible (ai/api.py)
    path("chat/completions", ai_api.ChatCompletionsAPI.as_view(), name="api_chat_completions"),
    path("embeddings", ai_api.EmbeddingsAPI.as_view(), name="api_embeddings"),
    path("models", ai_api.ModelsAPI.as_view(), name="api_models"),
    # Webhook endpoints (saas/webhooks/api.py)
    path("webhooks", webhooks_api.WebhooksAPI.as_view(), name="api_webhooks"),
    path("webhooks/<uuid:webhook_id>", webhooks_api.WebhookAPI.as_view(), name="api_webhook"),
    path(
        "webhooks/<uuid:webhook_id>/rotate-secret",
        webhooks_api.WebhookRotateSecretAPI.as_view(),
        name="api_webhook_rotate_secret",
    ),
    path(
        "webhooks/<uuid:webhook_id>/test",
        webhooks_api.WebhookTestAPI.as_view(),
        name="api_webhook_test",
    ),
    path(
        "webhooks/<uuid:webhook_id>/deliveries",
        webhooks_api.WebhookDeliveriesAPI.as_view(),
        name="api_webhook_deliveries",
    ),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
    re_path(r"^", not_found),  # any path, also one with a newline (which `.*` does not match)
]
