"""URLs of the public site (the base domain): landing, signup/login, organisation chooser."""

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from tenants import views

# Staff sign in to the admin through allauth (rate limits, MFA) instead of Django's own form.
admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = "Atrium operations"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.landing, name="landing"),
    path("accounts/", include("allauth.urls")),
    path("api/", include("saas.api.urls")),
    path("orgs/", views.OrganizationsView.as_view(), name="organizations"),
    path("orgs/<slug:slug>/open/", views.OrganizationOpenView.as_view(), name="organization_open"),
]
