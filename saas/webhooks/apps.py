from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "saas.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"
