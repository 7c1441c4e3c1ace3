from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Plans, subscriptions, usage ledger, Stripe (public schema); built by the billing issue."""

    name = "billing"
