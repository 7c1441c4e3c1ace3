"""URLs of a tenant's site (<slug>.<base domain>)."""

from django.urls import include, path

from ai import chat_views
from ai import views as ai_views
from ai.jobs import views as jobs_views
from retrieval import views as kb_views
from tenants import api_keys_views, views

urlpatterns = [
    path("", views.DashboardView.as_view(), name="dashboard"),
    path("accounts/", include("allauth.urls")),
    path("api/", include("saas.api.urls")),
    path("auth/handoff/<str:token>/", views.login_handoff, name="login_handoff"),
    path("switch/<slug:slug>/", views.SwitchTenantView.as_view(), name="switch_tenant"),
    path("members/", views.MembersView.as_view(), name="members"),
    path("members/<int:membership_id>/role/", views.MemberRoleView.as_view(), name="member_role"),
    path(
        "members/<int:membership_id>/remove/",
        views.MemberRemoveView.as_view(),
        name="member_remove",
    ),
    path("invitations/", views.InvitationCreateView.as_view(), name="invitation_create"),
    path(
        "invitations/<int:invitation_id>/revoke/",
        views.InvitationRevokeView.as_view(),
        name="invitation_revoke",
    ),
    path(
        "invitations/<str:token>/", views.InvitationAcceptView.as_view(), name="invitation_accept"
    ),
    path("documents/", kb_views.DocumentsView.as_view(), name="documents"),
    path(
        "documents/embedding-model/",
        kb_views.EmbeddingModelView.as_view(),
        name="documents_embedding_model",
    ),
    path("documents/<int:document_id>/", kb_views.DocumentView.as_view(), name="document"),
    path(
        "documents/<int:document_id>/delete/",
        kb_views.DocumentDeleteView.as_view(),
        name="document_delete",
    ),
    path(
        "documents/id/<uuid:public_id>/",
        kb_views.DocumentByPublicIdView.as_view(),
        name="document_by_public_id",
    ),
    path("ask/", kb_views.AskView.as_view(), name="ask"),
    path("jobs/", jobs_views.JobsView.as_view(), name="jobs"),
    path("jobs/<uuid:job_id>/", jobs_views.JobView.as_view(), name="job"),
    path("jobs/<uuid:job_id>/cancel/", jobs_views.JobCancelView.as_view(), name="job_cancel"),
    path("chat/", chat_views.ChatView.as_view(), name="chat"),
    path(
        "chat/<uuid:conversation_id>/", chat_views.ConversationView.as_view(), name="conversation"
    ),
    path(
        "chat/<uuid:conversation_id>/delete/",
        chat_views.ConversationDeleteView.as_view(),
        name="conversation_delete",
    ),
    path("settings/ai/", ai_views.AISettingsView.as_view(), name="ai_settings"),
    path("settings/api-keys/", api_keys_views.APIKeysView.as_view(), name="api_keys"),
    path(
        "settings/api-keys/<int:key_pk>/revoke/",
        api_keys_views.APIKeyRevokeView.as_view(),
        name="api_key_revoke",
    ),
    path(
        "settings/ai/keys/<slug:provider>/remove/",
        ai_views.ProviderKeyRemoveView.as_view(),
        name="provider_key_remove",
    ),
]
