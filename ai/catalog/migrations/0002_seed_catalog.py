"""Starting catalog: models with list prices (operators edit them in the admin), routes per
feature and tier, and the first versions of the built-in prompts."""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SINCE = datetime(2026, 1, 1, tzinfo=UTC)

MODELS = [
    # key, provider, provider model, kind, context, max output, dims, tier, in, out, cached ($/1M)
    ("local-extractive", "local", "local-extractive", "chat", 100_000, 1024, None, "free", 0, 0, 0),
    ("local-minilm", "local", "all-MiniLM-L6-v2", "embedding", 256, 0, 384, "free", 0, 0, 0),
    ("gpt-4o-mini", "openai", "gpt-4o-mini", "chat", 128_000, 16_384, None, "free",
     "0.15", "0.60", "0.075"),
    ("gpt-4o", "openai", "gpt-4o", "chat", 128_000, 16_384, None, "standard",
     "2.50", "10.00", "1.25"),
    ("text-embedding-3-small", "openai", "text-embedding-3-small", "embedding", 8191, 0, 1536,
     "free", "0.02", 0, 0),
    ("claude-haiku", "anthropic", "claude-haiku-4-5", "chat", 200_000, 8192, None, "free",
     "1.00", "5.00", "0.10"),
    ("claude-sonnet", "anthropic", "claude-sonnet-4-5", "chat", 200_000, 8192, None, "standard",
     "3.00", "15.00", "0.30"),
    ("oss-chat", "openai_compatible", "llama-3.1-8b-instruct", "chat", 32_768, 4096, None, "free",
     0, 0, 0),
]  # fmt: skip

CHEAP = ["gpt-4o-mini", "claude-haiku", "oss-chat"]
STRONG = ["gpt-4o", "claude-sonnet", *CHEAP]
ROUTES = {
    feature: {"free": CHEAP, "standard": STRONG, "premium": STRONG}
    for feature in ("chat", "answer", "summarize", "classify", "extract")
}
ROUTES["embed"] = {tier: ["local-minilm"] for tier in ("free", "standard", "premium")}

PROMPTS = {
    "chat": (
        "General assistant conversation.",
        "You are the AI assistant of {organization}. Answer clearly and concisely. If you are "
        "not sure, say so instead of guessing.",
    ),
    "answer": (
        "Answers grounded in the knowledge base, with citations.",
        "You answer questions for {organization} using only the numbered documents provided. "
        "Cite every statement with the number of its document, like [1]. If the documents do "
        "not contain the answer, say that you could not find it in the documents.",
    ),
    "summarize": (
        "Summaries of documents.",
        "Summarise the text for {organization} in a few sentences.",
    ),
    "classify": (
        "Classification into given labels.",
        "Classify the text into one of the labels given.",
    ),
}


def seed(apps, schema_editor):
    AIModel = apps.get_model("ai_catalog", "AIModel")
    ModelPrice = apps.get_model("ai_catalog", "ModelPrice")
    Route = apps.get_model("ai_catalog", "Route")
    PromptTemplate = apps.get_model("ai_catalog", "PromptTemplate")
    PromptVersion = apps.get_model("ai_catalog", "PromptVersion")
    for key, provider, provider_model, kind, ctx, out, dims, tier, pin, pout, pcached in MODELS:
        model = AIModel.objects.create(
            key=key, provider=provider, provider_model=provider_model, kind=kind,
            context_window=ctx, max_output_tokens=out, dimensions=dims, tier=tier,
        )  # fmt: skip
        ModelPrice.objects.create(
            model=model, effective_from=SINCE, input_per_mtok=Decimal(pin),
            output_per_mtok=Decimal(pout), cached_input_per_mtok=Decimal(pcached),
        )  # fmt: skip
    for feature, tiers in ROUTES.items():
        for tier, models in tiers.items():
            Route.objects.create(feature=feature, tier=tier, models=models)
    for key, (description, system) in PROMPTS.items():
        template = PromptTemplate.objects.create(key=key, description=description)
        version = PromptVersion.objects.create(template=template, version=1, system=system)
        template.active_version = version
        template.save(update_fields=["active_version"])


class Migration(migrations.Migration):
    dependencies = [("ai_catalog", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
