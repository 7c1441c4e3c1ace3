"""/api/: version 1 endpoints, the OpenAPI schema and its docs. Included on every host (the
API key picks the tenant on the base domain)."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from retrieval import api as retrieval_api
from saas.api.errors import not_found

v1 = [
    path("documents", retrieval_api.DocumentsAPI.as_view(), name="api_documents"),
    path("documents/<uuid:document_id>", retrieval_api.DocumentAPI.as_view(), name="api_document"),
    path("search", retrieval_api.SearchAPI.as_view(), name="api_search"),
]

urlpatterns = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api_schema"), name="api_docs"),
    re_path(r"^", not_found),  # any path, also one with a newline (which `.*` does not match)
]
