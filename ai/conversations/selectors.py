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


def user_conversations(*, tenant: Tenant, user_id: int) -> list[Conversation]:
    """The person's own conversations on the chat page, most recent first."""
    with tenant_context(tenant):
        return list(Conversation.objects.filter(user_id=user_id)[:200])


def user_conversation(*, tenant: Tenant, user_id: int, public_id: uuid.UUID) -> Conversation:
    """One of the person's conversations; anyone else's answers like a missing one (404)."""
    with tenant_context(tenant):
        conversation = Conversation.objects.filter(public_id=public_id, user_id=user_id).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def conversation_messages(*, tenant: Tenant, conversation: Conversation) -> list[Message]:
    with tenant_context(tenant):
        return list(conversation.messages.order_by("created_at", "id"))
