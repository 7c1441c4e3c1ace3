"""Forms for signup, organisations, invitations and roles."""

from __future__ import annotations

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from tenants.models import APIKey, Role
from tenants.services.provisioning import slug_check_available


class OrganizationFields(forms.Form):
    organization_name = forms.CharField(
        label="Organisation name",
        max_length=100,
        widget=forms.TextInput(attrs={"autofocus": False}),
    )
    slug = forms.CharField(
        label="Address",
        help_text="Lowercase letters, digits and hyphens. It becomes your site's address.",
    )

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"].strip().lower()
        slug_check_available(slug)
        return slug


class OrganizationSignupForm(OrganizationFields):
    """Extra fields on allauth's signup form; the tenant is provisioned by the account adapter
    right after allauth creates the user (tenants.adapters)."""

    field_order = ["email", "organization_name", "slug", "password1"]

    def signup(self, request: object, user: object) -> None:
        """allauth calls this after saving the user; provisioning happens in the adapter."""


class OrganizationCreateForm(OrganizationFields):
    """A signed-in user creating another organisation."""


class InvitationForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AcceptInvitationForm(forms.Form):
    """For an invited person without an account: choose a password to create one."""

    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    def __init__(self, *args: object, email: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.email = email

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        from tenants.models import User

        try:
            validate_password(password, User(email=self.email))
        except ValidationError as error:
            raise forms.ValidationError(error.messages) from None
        return password


class APIKeyForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="Where it is used, e.g. “Zapier” or “Support bot”."
    )
    scopes = forms.MultipleChoiceField(
        choices=APIKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[APIKey.Scope.CHAT, APIKey.Scope.SEARCH],
    )
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, label="Expires after (days)",
        help_text="Leave empty for a key that does not expire.",
    )  # fmt: skip
