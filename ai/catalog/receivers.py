"""Any edit to the catalog bumps the shared config version, so every process reloads its
snapshot on its next check (ai.gateway.config) without a deploy."""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from ai.catalog import models as catalog


def bump_config_version(**kwargs: object) -> None:
    from ai.gateway.config import config_invalidate

    transaction.on_commit(config_invalidate)


for _model in (
    catalog.AIModel,
    catalog.ModelPrice,
    catalog.Route,
    catalog.FeatureFlag,
    catalog.PromptTemplate,
    catalog.PromptVersion,
    catalog.TenantAIPolicy,
):
    for _signal in (post_save, post_delete):
        _signal.connect(
            bump_config_version, sender=_model, dispatch_uid=f"ai-cfg-{_model.__name__}"
        )
