"""Request validation and response documentation of the OpenAI-compatible endpoints.

Requests take OpenAI's shape; fields OpenAI has and Atrium does not use (top_p, stop, seed,
logprobs, metadata, ...) are ignored, as are unknown ones. What would silently change the
answer is refused instead: n > 1, tools or functions, non-text content parts, tool messages.
The response serializers only document the bodies (the views build plain dicts)."""

from __future__ import annotations

import re
from typing import Any

from django.core.validators import ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from retrieval.models import MAX_TAGS, TAG_MAX_CHARS

ROLES = ("system", "developer", "user", "assistant")
SYSTEM_ROLES = frozenset({"system", "developer"})
MAX_MESSAGES = 1000
MAX_EMBEDDING_INPUTS = 2048
MAX_OUTPUT_TOKENS = 1_000_000  # a sanity bound; the gateway caps it by plan and model


class TextValidatorsMixin:
    """What DRF's CharField refuses in text (NUL and lone surrogates cannot reach PostgreSQL or
    be encoded as UTF-8), for the fields that take text in OpenAI's looser shapes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self.validators = [
            ProhibitNullCharactersValidator(),
            ProhibitSurrogateCharactersValidator(),
        ]

    def run_validators(self, value: Any) -> None:
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            super().run_validators(text)  # type: ignore[misc]


_TEXT_PART = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
    "required": ["type", "text"],
}


@extend_schema_field(
    {"oneOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART, "minItems": 1}]}
)
class MessageContentField(TextValidatorsMixin, serializers.Field):
    """A message's text: a string, or a list of text parts (joined by newlines)."""

    default_error_messages = {
        "invalid": "Give the content as a string or a list of text parts.",
        "part": 'Each content part is an object {{"type": "text", "text": "..."}}.',
        "unsupported": "Only text content parts are supported, not “{kind}”.",
    }

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        if not isinstance(data, list) or not data:
            self.fail("invalid")
        texts = []
        for part in data:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                self.fail("part")
            if part["type"] != "text":
                self.fail("unsupported", kind=part["type"][:40])
            if not isinstance(part.get("text"), str):
                self.fail("part")
            texts.append(part["text"])
        return "\n".join(texts)

    def to_representation(self, value: str) -> str:
        return value


class ChatMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=ROLES,
        error_messages={
            "invalid_choice": "“{input}” is not a supported role: use system, developer, user "
            "or assistant (tool and function messages are not supported)."
        },
    )
    content = MessageContentField()


class StreamOptionsSerializer(serializers.Serializer):
    include_usage = serializers.BooleanField(
        default=False, help_text="Send a last chunk with `usage` (and no choices) before [DONE]."
    )


class AtriumChatOptionsSerializer(serializers.Serializer):
    knowledge_base = serializers.BooleanField(
        default=False,
        help_text="Answer from the tenant's knowledge base (retrieved with the last user "
        "message), citing the passages as [n]; `atrium.citations` lists them.",
    )
    tags = serializers.ListField(
        child=serializers.CharField(max_length=TAG_MAX_CHARS),
        required=False,
        max_length=MAX_TAGS,
        help_text="Only documents with any of these tags.",
    )
    k = serializers.IntegerField(
        min_value=1, max_value=20, default=5, help_text="How many passages to retrieve."
    )


class ChatCompletionCreateSerializer(serializers.Serializer):
    model = serializers.CharField(
        max_length=200, help_text="An Atrium model key the tenant may use (GET /api/v1/models)."
    )
    messages = ChatMessageSerializer(many=True, allow_empty=False, max_length=MAX_MESSAGES)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    max_completion_tokens = serializers.IntegerField(
        min_value=1, max_value=MAX_OUTPUT_TOKENS, required=False, allow_null=True,
        help_text="Capped by the tenant's plan and the model.",
    )  # fmt: skip
    max_tokens = serializers.IntegerField(
        min_value=1, max_value=MAX_OUTPUT_TOKENS, required=False, allow_null=True,
        help_text="Older name of max_completion_tokens (which wins when both are given).",
    )  # fmt: skip
    n = serializers.IntegerField(
        min_value=1, max_value=1, required=False, allow_null=True,
        error_messages={"max_value": "Only n=1 is supported: one choice per request."},
    )  # fmt: skip
    stream = serializers.BooleanField(required=False, default=False, allow_null=True)
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)
    user = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=256,
        help_text="Accepted for compatibility; not stored.",
    )  # fmt: skip
    atrium = AtriumChatOptionsSerializer(
        required=False, allow_null=True, help_text="Atrium's extensions."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for unsupported in ("tools", "functions"):
            if self.initial_data.get(unsupported):
                raise serializers.ValidationError(
                    {unsupported: "Tools and function calling are not supported."}
                )
        if all(message["role"] in SYSTEM_ROLES for message in attrs["messages"]):
            raise serializers.ValidationError(
                {"messages": "Send at least one user or assistant message."}
            )
        options = attrs.get("atrium") or {}
        if options.get("knowledge_base") and not any(
            message["role"] == "user" and message["content"].strip()
            for message in attrs["messages"]
        ):
            raise serializers.ValidationError(
                {"messages": "A knowledge-base answer needs a user message to search for."}
            )
        return attrs


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "minLength": 1},
            {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "maxItems": MAX_EMBEDDING_INPUTS,
            },
        ]
    }
)
class EmbeddingInputField(TextValidatorsMixin, serializers.Field):
    """A text or a list of texts (token arrays are not supported)."""

    default_error_messages = {
        "invalid": "Give the input as a string or a list of strings.",
        "empty": "Input texts may not be empty.",
        "tokens": "Token arrays are not supported: send the text.",
        "too_many": f"At most {MAX_EMBEDDING_INPUTS} texts per request.",
    }

    def to_internal_value(self, data: Any) -> list[str]:
        texts = [data] if isinstance(data, str) else data
        if not isinstance(texts, list) or not texts:
            self.fail("empty" if texts == [] else "invalid")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            self.fail("too_many")
        for text in texts:
            if isinstance(text, int | list) and not isinstance(text, bool):
                self.fail("tokens")
            if not isinstance(text, str):
                self.fail("invalid")
            if not text:
                self.fail("empty")
        return texts

    def to_representation(self, value: list[str]) -> list[str]:
        return value


class EmbeddingCreateSerializer(serializers.Serializer):
    input = EmbeddingInputField()
    model = serializers.CharField(
        max_length=200, help_text="An embedding model the tenant may use (GET /api/v1/models)."
    )
    encoding_format = serializers.ChoiceField(
        choices=["float", "base64"], default="float", required=False,
        help_text="base64: each vector as little-endian float32 bytes.",
    )  # fmt: skip
    dimensions = serializers.IntegerField(
        min_value=1, max_value=65536, required=False, allow_null=True,
        help_text="Vector size: the model's own, or smaller where its provider can shorten.",
    )  # fmt: skip
    user = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=256,
        help_text="Accepted for compatibility; not stored.",
    )  # fmt: skip


# --- responses (documentation only) ----------------------------------------------------------


def constant(value: str) -> serializers.Field:
    """A string that is always `value` (a pattern, not an enum: drf-spectacular would name
    one enum component per field name, and `object` is `list` in two bodies)."""

    @extend_schema_field({"type": "string", "pattern": f"^{re.escape(value)}$"})
    class Constant(serializers.CharField):
        pass

    return Constant()


class CompletionUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class AssistantMessageSerializer(serializers.Serializer):
    role = constant("assistant")
    content = serializers.CharField(allow_blank=True)
    refusal = serializers.CharField(allow_null=True)


class ChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = AssistantMessageSerializer()
    logprobs = serializers.JSONField(allow_null=True)
    finish_reason = serializers.ChoiceField(choices=["stop", "length"])


class AtriumCitationSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The n of [n] in the answer.")
    document_id = serializers.UUIDField()
    title = serializers.CharField(allow_blank=True)
    page = serializers.IntegerField(allow_null=True)
    url = serializers.URLField(help_text="The document in this API (GET, documents:read).")


class AtriumChatResultSerializer(serializers.Serializer):
    citations = AtriumCitationSerializer(many=True)


class ChatCompletionSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="chatcmpl-…, also the request id in the usage ledger.")
    object = constant("chat.completion")
    created = serializers.IntegerField(help_text="Unix seconds.")
    model = serializers.CharField(help_text="The Atrium model key that answered.")
    choices = ChoiceSerializer(many=True)
    usage = CompletionUsageSerializer()
    system_fingerprint = serializers.CharField(allow_null=True)
    atrium = AtriumChatResultSerializer(
        required=False, help_text="With `atrium.knowledge_base`: the cited passages."
    )


@extend_schema_field({"type": "string", "pattern": r"^(\[DONE\]|\{.*\})$"})
class EventDataField(serializers.CharField):
    pass


class ChatCompletionEventSerializer(serializers.Serializer):
    """One server-sent event of a streamed completion."""

    data = EventDataField(
        help_text="A `chat.completion.chunk` as JSON; `[DONE]` after a complete answer; "
        '`{"error": {...}}` (OpenAI\'s error object) ending a stream that broke.'
    )


class EmbeddingUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


@extend_schema_field(
    {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]}
)
class VectorField(serializers.Field):
    pass


class EmbeddingSerializer(serializers.Serializer):
    object = constant("embedding")
    index = serializers.IntegerField()
    embedding = VectorField(help_text="Floats, or base64 with encoding_format=base64.")


class EmbeddingListSerializer(serializers.Serializer):
    object = constant("list")
    data = EmbeddingSerializer(many=True)
    model = serializers.CharField(help_text="The Atrium model key that embedded.")
    usage = EmbeddingUsageSerializer()


class AtriumModelInfoSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["chat", "embedding"])
    context_window = serializers.IntegerField()
    dimensions = serializers.IntegerField(allow_null=True, help_text="Embedding models.")


class OpenAIModelSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The Atrium model key (use it as `model`).")
    object = constant("model")
    created = serializers.IntegerField(help_text="Unix seconds the model was first priced.")
    owned_by = serializers.CharField(help_text="The provider: openai, anthropic, local, …")
    atrium = AtriumModelInfoSerializer()


class OpenAIModelListSerializer(serializers.Serializer):
    object = constant("list")
    data = OpenAIModelSerializer(many=True)
