"""The AI catalog (public schema). Operators edit it in the Django admin; the gateway reads a
cached snapshot of it (ai.gateway.config) that is refreshed when any row changes."""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from tenants.models import Tenant


class Provider(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible server"
    LOCAL = "local", "Local (built in)"


class Tier(models.TextChoices):
    FREE = "free", "Free"
    STANDARD = "standard", "Standard"
    PREMIUM = "premium", "Premium"


class AIModel(models.Model):
    class Kind(models.TextChoices):
        CHAT = "chat", "Chat"
        EMBEDDING = "embedding", "Embedding"

    key = models.SlugField(max_length=80, unique=True, help_text="Atrium's name for the model.")
    provider = models.CharField(max_length=32, choices=Provider.choices)
    provider_model = models.CharField(max_length=120, help_text="The provider's model id.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CHAT)
    context_window = models.PositiveIntegerField(default=8192)
    max_output_tokens = models.PositiveIntegerField(default=4096)
    dimensions = models.PositiveIntegerField(null=True, blank=True, help_text="Embeddings only.")
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.STANDARD)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["provider", "key"]
        verbose_name = "AI model"

    def __str__(self) -> str:
        return self.key


class ModelPrice(models.Model):
    """A price version. Rows are never edited once used: a new price is a new row with a later
    `effective_from`, so usage recorded earlier keeps pointing at the price it was billed at."""

    model = models.ForeignKey(AIModel, on_delete=models.PROTECT, related_name="prices")
    effective_from = models.DateTimeField()
    input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    output_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    cached_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    # The one place the batch price is decided (ai.gateway.batch): calls sent through the
    # provider's batch API cost this much less (OpenAI and Anthropic both take 50% off).
    batch_discount_percent = models.PositiveSmallIntegerField(
        default=50,
        validators=[MaxValueValidator(100)],
        help_text="Percent off every rate for calls made through the provider's batch API.",
    )

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="price_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


class Route(models.Model):
    """Which models serve a feature for a plan tier, in order: primary, then fallbacks."""

    feature = models.CharField(max_length=32)
    tier = models.CharField(max_length=16, choices=Tier.choices)
    models = models.JSONField(default=list, help_text="Ordered list of model keys.")

    class Meta:
        ordering = ["feature", "tier"]
        constraints = [
            models.UniqueConstraint(fields=["feature", "tier"], name="route_feature_tier_unique")
        ]

    def __str__(self) -> str:
        return f"{self.feature}/{self.tier}: {' -> '.join(self.models)}"

    def clean(self) -> None:
        if not isinstance(self.models, list) or not all(isinstance(m, str) for m in self.models):
            raise ValidationError({"models": "A list of model keys."})


class FeatureFlag(models.Model):
    """A kill switch. `feature` "*" means every AI feature; no tenant means every tenant.
    Any matching flag that is off turns the feature off (the most cautious switch wins)."""

    feature = models.CharField(max_length=32, default="*")
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE)
    enabled = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True, help_text="Shown to users when off.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["feature", "tenant"], name="flag_feature_tenant_unique"
            ),
            models.UniqueConstraint(
                fields=["feature"],
                condition=models.Q(tenant__isnull=True),
                name="flag_global_unique",
            ),
        ]

    def __str__(self) -> str:
        scope = self.tenant.slug if self.tenant_id else "all tenants"
        return f"{self.feature} for {scope}: {'on' if self.enabled else 'off'}"


class PromptTemplate(models.Model):
    """A named prompt. Versions are immutable; `active_version` is the pointer the gateway uses
    (rollback = point it back). An optional `candidate_version` gets `candidate_percent` of
    callers, each caller always getting the same one (sticky by tenant and actor)."""

    key = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=200, blank=True)
    active_version = models.ForeignKey(
        "PromptVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    candidate_version = models.ForeignKey(
        "PromptVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    candidate_percent = models.PositiveSmallIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )

    def __str__(self) -> str:
        return self.key

    def clean(self) -> None:
        for field in ("active_version", "candidate_version"):
            version = getattr(self, field)
            if version is not None and version.template_id != self.pk:
                raise ValidationError({field: "Pick a version of this prompt."})


class PromptVersion(models.Model):
    template = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    system = models.TextField(help_text="System prompt; {placeholders} are filled at call time.")
    created_at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["template", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["template", "version"], name="prompt_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.template.key}@v{self.version}"

    @property
    def label(self) -> str:
        return f"{self.template.key}@v{self.version}"


class TenantAIPolicy(models.Model):
    """Per-tenant AI settings kept by the platform: allowed models, caching."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="ai_policy")
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model keys this tenant may use; empty = all."
    )
    cache_enabled = models.BooleanField(default=True)
    semantic_cache_enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"AI policy of {self.tenant}"
