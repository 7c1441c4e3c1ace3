from django import forms

from ai.catalog.models import Provider
from ai.services import BYOK_PROVIDERS


class ProviderKeyForm(forms.Form):
    provider = forms.ChoiceField(
        choices=[(p.value, p.label) for p in Provider if p in BYOK_PROVIDERS]
    )
    api_key = forms.CharField(
        label="API key", widget=forms.PasswordInput(render_value=False), strip=True
    )
    base_url = forms.URLField(
        label="Base URL", required=False, help_text="Only for OpenAI-compatible servers."
    )
