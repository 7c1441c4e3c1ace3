"""URLs of the public site (the base domain): landing, signup/login, organisation chooser."""

from django.urls import include, path

from tenants import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("accounts/", include("allauth.urls")),
    path("orgs/", views.OrganizationsView.as_view(), name="organizations"),
    path("orgs/<slug:slug>/open/", views.OrganizationOpenView.as_view(), name="organization_open"),
]
