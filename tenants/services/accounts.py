"""Creating accounts outside the signup form (commands, seeding)."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.contrib.auth.password_validation import validate_password
from django.core.validators import validate_email
from django.db import transaction

from tenants.models import User


@transaction.atomic
def user_ensure(*, email: str, password: str | None) -> User:
    """The account for `email`, created with `password` (validated) if it does not exist.
    An existing account's password is left as it is."""
    email = email.strip().lower()
    validate_email(email)
    user = User.objects.filter(email__iexact=email).first()
    if user is not None:
        return user
    validate_password(password, User(email=email))
    user = User.objects.create_user(email, password)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user
