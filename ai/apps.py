from django.apps import AppConfig


class AiConfig(AppConfig):
    """The model gateway, providers, prompts and conversations. Filled in by the gateway issue."""

    name = "ai"
