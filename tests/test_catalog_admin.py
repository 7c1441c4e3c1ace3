"""Operators manage the AI catalog in the public site's admin; prompt versions are immutable."""

from __future__ import annotations

import pytest

from ai.catalog.models import PromptTemplate, PromptVersion
from tenants.models import User
from tests.conftest import client_on

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(world):
    user = User.objects.create_superuser("ops@atrium.test", "Operator-pass-123")
    return client_on("localhost", user)


def test_it_lets_operators_list_the_catalog(operator):
    for model in ("aimodel", "route", "featureflag", "prompttemplate", "tenantaipolicy"):
        path = f"/admin/ai_catalog/{model}/"
        assert operator.get(path).status_code == 200, path


def test_it_never_edits_a_saved_prompt_version(operator):
    version = PromptVersion.objects.get(template__key="answer", version=1)
    response = operator.post(
        f"/admin/ai_catalog/promptversion/{version.pk}/change/",
        {"template": version.template_id, "version": 1, "system": "Hacked"},
    )
    assert response.status_code == 403
    assert PromptVersion.objects.get(pk=version.pk).system != "Hacked"


def test_it_keeps_tenant_members_out_of_the_admin(world):
    assert client_on("localhost", world.alice).get("/admin/ai_catalog/aimodel/").status_code == 302
    assert client_on("acme.localhost", world.alice).get("/admin/").status_code == 404


def test_it_rolls_back_a_prompt_by_moving_the_pointer(operator):
    template = PromptTemplate.objects.get(key="answer")
    v2 = PromptVersion.objects.create(template=template, version=2, system="New")
    template.active_version = v2
    template.save()
    response = operator.post(
        f"/admin/ai_catalog/prompttemplate/{template.pk}/change/",
        {
            "key": "answer", "description": template.description,
            "active_version": template.versions.get(version=1).pk, "candidate_version": "",
            "candidate_percent": 0,
            "versions-TOTAL_FORMS": 0, "versions-INITIAL_FORMS": 2,
            "versions-MIN_NUM_FORMS": 0, "versions-MAX_NUM_FORMS": 1000,
        },
    )  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    template.refresh_from_db()
    assert template.active_version.version == 1
    assert PromptVersion.objects.filter(template=template).count() == 2
