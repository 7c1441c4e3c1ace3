from django import forms

ACCEPT = ".txt,.md,.markdown,.html,.htm,.pdf,.docx"


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented pattern); cleans to a list."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"accept": ACCEPT}))
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        single = super().clean
        if isinstance(data, list | tuple) and data:
            return [single(item, initial) for item in data]
        if isinstance(data, list | tuple):
            data = None  # nothing chosen: the field's own "required" error
        return [single(data, initial)]


class UploadForm(forms.Form):
    files = MultipleFileField(label="Files")


class AskForm(forms.Form):
    q = forms.CharField(label="Question", max_length=2000, strip=True)
    tag = forms.CharField(label="Only documents tagged", max_length=40, required=False)


class TagsForm(forms.Form):
    tags = forms.CharField(
        label="Tags", max_length=1000, required=False, strip=True,
        help_text="Comma-separated, e.g. policies, hr. Search can be limited to a tag.",
    )  # fmt: skip


class EmbeddingModelForm(forms.Form):
    model = forms.ChoiceField(label="Embedding model")

    def __init__(self, *args: object, models: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(key, key) for key in models]
