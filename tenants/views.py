"""Tenancy pages. Each view validates, calls one service, renders."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views import View

from ai.selectors import ai_status_for
from saas.audit.selectors import audit_events_for
from saas.lib.views import TenantAdminRequiredMixin, TenantMemberRequiredMixin
from tenants.forms import AcceptInvitationForm, InvitationForm, OrganizationCreateForm, RoleForm
from tenants.selectors import (
    invitation_in,
    members_of,
    membership_for,
    membership_in,
    memberships_of,
    open_invitations_of,
    tenant_by_slug,
    user_by_email,
)
from tenants.services.handoff import login_handoff_redeem, login_handoff_url
from tenants.services.invitations import (
    InvitationUnusable,
    invitation_accept,
    invitation_accept_new_account,
    invitation_create,
    invitation_from_token,
    invitation_revoke,
)
from tenants.services.memberships import membership_change_role, membership_remove
from tenants.services.provisioning import tenant_provision
from tenants.slugs import url_for_host

LOGIN_BACKEND = "django.contrib.auth.backends.ModelBackend"


# --- public site -----------------------------------------------------------------------------


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "landing.html")


class OrganizationsView(LoginRequiredMixin, View):
    """The signed-in user's organisations on the public site, and a form to create another."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return self._render(request, OrganizationCreateForm())

    def post(self, request: HttpRequest) -> HttpResponse:
        form = OrganizationCreateForm(request.POST)
        if form.is_valid():
            try:
                tenant = tenant_provision(
                    slug=form.cleaned_data["slug"],
                    name=form.cleaned_data["organization_name"],
                    owner=request.user,
                )
            except ValidationError as error:
                form.add_error("slug", error)
            else:
                return HttpResponseRedirect(login_handoff_url(user=request.user, tenant=tenant))
        return self._render(request, form, status=400)

    def _render(self, request: HttpRequest, form: OrganizationCreateForm, status: int = 200):
        memberships = memberships_of(user=request.user)
        return render(
            request, "tenants/organizations.html", {"form": form, "memberships": memberships},
            status=status,
        )  # fmt: skip


def _handoff_to(request: HttpRequest, slug: str) -> HttpResponse:
    """Redirect to a sign-in link on the host of tenant `slug` if the user belongs to it."""
    tenant = tenant_by_slug(slug=slug)
    if tenant is None or membership_for(tenant=tenant, user=request.user) is None:
        raise Http404
    return HttpResponseRedirect(login_handoff_url(user=request.user, tenant=tenant))


class OrganizationOpenView(LoginRequiredMixin, View):
    """Open one of my organisations from the public site."""

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        return _handoff_to(request, slug)


# --- tenant site -----------------------------------------------------------------------------


def login_handoff(request: HttpRequest, token: str) -> HttpResponse:
    user = login_handoff_redeem(tenant=request.tenant, token=token)
    if user is None:
        messages.error(request, "That sign-in link has expired. Please sign in.")
        return redirect("account_login")
    login(request, user, backend=LOGIN_BACKEND)
    return redirect("dashboard")


class SwitchTenantView(TenantMemberRequiredMixin, View):
    """The tenant switcher: hand the session over to another tenant I belong to."""

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        return _handoff_to(request, slug)


class DashboardView(TenantMemberRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        context = {
            "ai": ai_status_for(tenant=request.tenant),
            "member_count": members_of(tenant=request.tenant).count(),
            "events": audit_events_for(tenant=request.tenant, limit=10)
            if request.membership.is_admin
            else [],
        }
        return render(request, "tenants/dashboard.html", context)


class MembersView(TenantMemberRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "tenants/members.html", _members_context(request))


def _members_context(request: HttpRequest, **extra: object) -> dict[str, object]:
    return {
        "members": members_of(tenant=request.tenant),
        "invitations": open_invitations_of(tenant=request.tenant)
        if request.membership.is_admin
        else [],
        "invite_form": InvitationForm(),
        "roles": RoleForm.base_fields["role"].choices,
        **extra,
    }


def _members_response(request: HttpRequest, status: int = 200, **extra: object) -> HttpResponse:
    """After a change: the members panel for htmx, else a redirect back to the page."""
    if request.htmx:
        template = "tenants/_members_panel.html"
    elif status == 200:
        return redirect("members")
    else:
        template = "tenants/members.html"
    return render(request, template, _members_context(request, **extra), status=status)


class MemberRoleView(TenantAdminRequiredMixin, View):
    def post(self, request: HttpRequest, membership_id: int) -> HttpResponse:
        membership = membership_in(tenant=request.tenant, membership_id=membership_id)
        form = RoleForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Pick a valid role.")
            return _members_response(request, status=400)
        try:
            membership_change_role(
                tenant=request.tenant, acting_user=request.user, membership=membership,
                role=form.cleaned_data["role"],
            )  # fmt: skip
        except (ValidationError, PermissionDenied) as error:
            messages.error(request, _message(error))
            return _members_response(request, status=400)
        messages.success(
            request, f"{membership.user.email} is now {membership.get_role_display()}."
        )
        return _members_response(request)


class MemberRemoveView(TenantMemberRequiredMixin, View):
    """Remove a member (admins), or leave the tenant (anyone, for their own membership)."""

    def post(self, request: HttpRequest, membership_id: int) -> HttpResponse:
        membership = membership_in(tenant=request.tenant, membership_id=membership_id)
        leaving = membership.user_id == request.user.pk
        if not leaving and not request.membership.is_admin:
            raise PermissionDenied
        try:
            membership_remove(
                tenant=request.tenant, acting_user=request.user, membership=membership
            )
        except (ValidationError, PermissionDenied) as error:
            messages.error(request, _message(error))
            return _members_response(request, status=400)
        if leaving:
            messages.success(request, f"You left {request.tenant.name}.")
            return HttpResponseRedirect(_public_url("/orgs/"))
        messages.success(request, f"{membership.user.email} was removed.")
        return _members_response(request)


class InvitationCreateView(TenantAdminRequiredMixin, View):
    def post(self, request: HttpRequest) -> HttpResponse:
        form = InvitationForm(request.POST)
        if form.is_valid():
            try:
                invitation = invitation_create(
                    tenant=request.tenant, acting_user=request.user,
                    email=form.cleaned_data["email"], role=form.cleaned_data["role"],
                )  # fmt: skip
            except (ValidationError, PermissionDenied) as error:
                form.add_error("email", _message(error))
            else:
                messages.success(request, f"Invitation sent to {invitation.email}.")
                return _members_response(request)
        return _members_response(request, status=400, invite_form=form)


class InvitationRevokeView(TenantAdminRequiredMixin, View):
    def post(self, request: HttpRequest, invitation_id: int) -> HttpResponse:
        invitation = invitation_in(tenant=request.tenant, invitation_id=invitation_id)
        invitation_revoke(tenant=request.tenant, acting_user=request.user, invitation=invitation)
        messages.success(request, f"Invitation to {invitation.email} withdrawn.")
        return _members_response(request)


class InvitationAcceptView(View):
    """The emailed link. Joins a signed-in account, or creates the account first."""

    template_name = "tenants/invitation_accept.html"

    def dispatch(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        try:
            self.invitation = invitation_from_token(tenant=request.tenant, token=kwargs["token"])
        except InvitationUnusable as error:
            return render(request, self.template_name, {"error": error.reason}, status=404)
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        return self._render(request, AcceptInvitationForm(email=self.invitation.email))

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        try:
            if request.user.is_authenticated:
                invitation_accept(invitation=self.invitation, user=request.user)
            else:
                form = AcceptInvitationForm(request.POST, email=self.invitation.email)
                if not form.is_valid():
                    return self._render(request, form, status=400)
                membership = invitation_accept_new_account(
                    invitation=self.invitation, **form.cleaned_data
                )
                login(request, membership.user, backend=LOGIN_BACKEND)
        except InvitationUnusable as error:
            return render(request, self.template_name, {"error": error.reason}, status=400)
        messages.success(request, f"Welcome to {request.tenant.name}!")
        return redirect("dashboard")

    def _render(self, request: HttpRequest, form: AcceptInvitationForm, status: int = 200):
        context = {
            "invitation": self.invitation,
            "form": form,
            "has_account": user_by_email(email=self.invitation.email) is not None,
        }
        return render(request, self.template_name, context, status=status)


def _message(error: ValidationError | PermissionDenied) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error) or "You are not allowed to do that."


def _public_url(path: str) -> str:
    return url_for_host(settings.BASE_DOMAIN, path)
