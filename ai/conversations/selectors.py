"""Reads of conversations. Browser conversations are their user's; API ones the tenant's."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.http import Http404
from django_tenants.utils import tenant_context

from ai.models import Conversation, Message
from tenants.models import Tenant


def api_conversations() -> QuerySet[Conversation]:
    """Conversations started over the API (the API runs in the key's tenant schema)."""
    return Conversation.objects.filter(api_key_id__isnull=False)


def api_conversation(*, tenant: Tenant, public_id: uuid.UUID) -> Conversation:
    """One of the tenant's API conversations; anything else is a 404 like a missing one."""
    with tenant_context(tenant):
        conversation = api_conversations().filter(public_id=public_id).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def messages_of(*, tenant: Tenant, conversation: Conversation) -> QuerySet[Message]:
    with tenant_context(tenant):
        return conversation.messages.all()
