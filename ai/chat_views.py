"""The chat page: the person's conversations, and one conversation whose answers stream in
over the chat socket (ai.consumers; static/js/chat.js)."""

from __future__ import annotations

import uuid

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views import View

from ai.conversations.selectors import (
    conversation_messages,
    user_conversation,
    user_conversations,
)
from ai.conversations.services import conversation_delete, conversation_start
from ai.models import Message
from ai.selectors import ai_status_for
from saas.lib.views import TenantMemberRequiredMixin


class NewConversationForm(forms.Form):
    title = forms.CharField(max_length=200, required=False, strip=True)
    knowledge_base = forms.BooleanField(
        required=False, initial=True, label="Answer from our documents (with citations)"
    )


class ChatView(TenantMemberRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, "ai/chat.html", self._context(request, NewConversationForm()))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = NewConversationForm(request.POST)
        if not form.is_valid():
            return render(request, "ai/chat.html", self._context(request, form), status=400)
        conversation = conversation_start(
            tenant=request.tenant, user=request.user, title=form.cleaned_data["title"],
            knowledge_base=form.cleaned_data["knowledge_base"],
        )  # fmt: skip
        return redirect("conversation", conversation_id=conversation.public_id)

    def _context(self, request: HttpRequest, form: NewConversationForm) -> dict[str, object]:
        conversations = user_conversations(tenant=request.tenant, user_id=request.user.pk)
        return {"conversations": conversations, "form": form}


class ConversationView(TenantMemberRequiredMixin, View):
    def get(self, request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
        conversation = user_conversation(
            tenant=request.tenant, user_id=request.user.pk, public_id=conversation_id
        )
        history = conversation_messages(tenant=request.tenant, conversation=conversation)
        generating = next((m for m in history if m.status == Message.Status.GENERATING), None)
        context = {
            "conversation": conversation, "history": history, "generating": generating,
            "conversations": user_conversations(tenant=request.tenant, user_id=request.user.pk),
            "ai_status": ai_status_for(tenant=request.tenant),
        }  # fmt: skip
        return render(request, "ai/conversation.html", context)


class ConversationDeleteView(TenantMemberRequiredMixin, View):
    def post(self, request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
        conversation = user_conversation(
            tenant=request.tenant, user_id=request.user.pk, public_id=conversation_id
        )
        conversation_delete(tenant=request.tenant, conversation=conversation)
        messages.success(request, "The conversation was deleted.")
        return redirect("chat")
